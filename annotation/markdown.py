"""Markdown to safe HTML for untrusted text: imported answers, conversation turns and guidelines.

Python-Markdown's time grows faster than the text on some inputs (with the number of unclosed `[`
times the length of the text after them, with each emphasis span on very long text), and a lone
imported answer can be megabytes long. So every render is bounded twice, and both bounds show the
text as written (escaped, line breaks kept) under a note saying why it is not formatted:

- text longer than `MARKDOWN_MAX_CHARS` is not converted at all;
- a conversion that uses more than `MARKDOWN_MAX_CPU_MS` of its thread's CPU time is abandoned. The
  converter checks the clock at each step it takes (each block, each inline match), so it stops
  within one step of the limit, in whichever thread it runs; a thread cannot be killed from outside,
  and a process per render would cost more than the render.

BENCHMARKS.md ("Rendering bounds") has the measurements the defaults come from.
"""

import functools
import html
import threading
import time
from collections.abc import Callable

import markdown
import nh3
from django.conf import settings

ALLOWED_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "b", "i", "del", "sup", "sub",
    "code", "pre", "blockquote", "ul", "ol", "li", "a", "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}}
ALLOWED_URL_SCHEMES = {"http", "https", "mailto"}
MARKDOWN_EXTENSIONS = ["fenced_code", "tables", "sane_lists", "nl2br"]


class _OutOfTime(Exception):
    """The conversion in progress used up its CPU time."""


class _Deadline:
    """When the conversion in progress must end: once its thread has used this much CPU time."""

    def __init__(self) -> None:
        self.stop()

    def start(self, cpu_seconds: float) -> None:
        self.cpu_at = time.thread_time() + cpu_seconds
        self.clock_at = time.perf_counter() + cpu_seconds

    def stop(self) -> None:
        self.cpu_at = self.clock_at = float("inf")

    def check(self) -> None:
        # A thread cannot use more CPU time than time passes, so the cheap clock decides until the time
        # is up by it; only then is the thread's CPU time (a system call, ~0.5 µs) read.
        if time.perf_counter() > self.clock_at and time.thread_time() > self.cpu_at:
            raise _OutOfTime

    def guard(self, step: Callable) -> Callable:
        """`step`, checking the deadline before each call."""

        @functools.wraps(step)
        def guarded(*args, **kwargs):
            self.check()
            return step(*args, **kwargs)

        return guarded


_local = threading.local()


def _converter() -> tuple[markdown.Markdown, _Deadline]:
    """This thread's converter and its deadline: building one costs more than converting a short answer."""
    if getattr(_local, "converter", None) is None:
        converter = markdown.Markdown(extensions=MARKDOWN_EXTENSIONS, output_format="html")
        # Raw HTML is not Markdown here: without these two steps `<script>` would pass through as a tag.
        # Dropping them (instead of escaping the whole source up front) keeps `>` quotes and `<` in code
        # intact, and Markdown then escapes the angle brackets, so the reader sees `<script>` as written.
        converter.preprocessors.deregister("html_block")
        converter.inlinePatterns.deregister("html")
        # The converter's work goes step by step through these methods (a block, an inline match, a pass
        # over the document), and on text within MARKDOWN_MAX_CHARS no single step takes long: checking
        # the clock before each step bounds the whole conversion (to within ~10 ms, BENCHMARKS.md).
        deadline = _Deadline()
        for processor in converter.preprocessors:
            processor.run = deadline.guard(processor.run)
        for processor in converter.parser.blockprocessors:
            processor.run = deadline.guard(processor.run)
        for processor in converter.treeprocessors:
            processor.run = deadline.guard(processor.run)
        for processor in converter.inlinePatterns:
            processor.handleMatch = deadline.guard(processor.handleMatch)
        for processor in converter.postprocessors:
            processor.run = deadline.guard(processor.run)
        _local.converter, _local.deadline = converter, deadline
    return _local.converter, _local.deadline


def render_as_written(text: str, note: str) -> str:
    """The text escaped, line breaks kept, under a note that says why it is not formatted."""
    return f'<p class="format-note"><em>{note}</em></p><pre class="plain-text">{html.escape(text)}</pre>'


def _convert(text: str, max_cpu_seconds: float) -> str:
    converter, deadline = _converter()
    deadline.start(max_cpu_seconds)
    try:
        # Markdown instances keep state between documents and are not thread-safe: one per thread, reset.
        return converter.reset().convert(text)
    except (_OutOfTime, RecursionError):  # deep nesting: none found that gets there, but not a 500 if so
        # Abandoned midway, the converter's block parser may be left in a nested state that reset()
        # does not clear: the next text gets a fresh one.
        _local.converter = None
        raise _OutOfTime from None
    finally:
        deadline.stop()


# Every item is shown to several annotators and guidelines to everyone: converting is ~1 ms per answer,
# so each process keeps the most recent results (the output depends on the text and the limit alone).
@functools.lru_cache(maxsize=512)
def _render(text: str, max_cpu_ms: int) -> str:
    try:
        converted = _convert(text, max_cpu_ms / 1000)
    except _OutOfTime:
        return render_as_written(text, "This text took too long to format, so it is shown as written.")
    # The allow-list is the second wall: whatever the converter emits, only these tags and attributes stay,
    # and links keep only http(s)/mailto targets (no `javascript:`).
    return nh3.clean(
        converted,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=ALLOWED_URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )


def render_markdown(text: str) -> str:
    """Render Markdown to HTML in which raw HTML shows as text and nothing can run; too long: plain text."""
    if not text:
        return ""
    if len(text) > settings.MARKDOWN_MAX_CHARS:
        # Not kept in the cache: escaping is cheap, and a few such texts would fill memory.
        return render_as_written(
            text,
            f"This text is too long to format ({len(text):,} characters; the limit is "
            f"{settings.MARKDOWN_MAX_CHARS:,}), so it is shown as written.",
        )
    return _render(text, settings.MARKDOWN_MAX_CPU_MS)
