"""Markdown to safe HTML for untrusted text: imported answers, conversation turns and guidelines."""

import functools
import threading

import markdown
import nh3

ALLOWED_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "b", "i", "del", "sup", "sub",
    "code", "pre", "blockquote", "ul", "ol", "li", "a", "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}}
ALLOWED_URL_SCHEMES = {"http", "https", "mailto"}
MARKDOWN_EXTENSIONS = ["fenced_code", "tables", "sane_lists", "nl2br"]


_local = threading.local()


def _converter() -> markdown.Markdown:
    """This thread's converter: building one costs more than converting a short answer."""
    converter = getattr(_local, "converter", None)
    if converter is None:
        converter = markdown.Markdown(extensions=MARKDOWN_EXTENSIONS, output_format="html")
        # Raw HTML is not Markdown here: without these two steps `<script>` would pass through as a tag.
        # Dropping them (instead of escaping the whole source up front) keeps `>` quotes and `<` in code
        # intact, and Markdown then escapes the angle brackets, so the reader sees `<script>` as written.
        converter.preprocessors.deregister("html_block")
        converter.inlinePatterns.deregister("html")
        _local.converter = converter
    return converter


# Every item is shown to several annotators and guidelines to everyone: converting is ~1 ms per answer,
# so each process keeps the most recent results (the output depends on the text alone).
@functools.lru_cache(maxsize=512)
def render_markdown(text: str) -> str:
    """Render Markdown to HTML in which raw HTML in the source shows as text and nothing can run."""
    # Markdown instances keep state between documents and are not thread-safe: one per thread, reset.
    html = _converter().reset().convert(text or "")
    # The allow-list is the second wall: whatever the converter emits, only these tags and attributes stay,
    # and links keep only http(s)/mailto targets (no `javascript:`).
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=ALLOWED_URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )
