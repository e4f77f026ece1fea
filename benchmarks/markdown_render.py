"""CPU time of rendering adversarial Markdown against its size, unbounded and within the bounds.

    .venv/bin/python benchmarks/markdown_render.py
    .venv/bin/python benchmarks/markdown_render.py --sizes 1000,20000 --give-up 2

Each cell is the CPU time of one call of `annotation.markdown.render_markdown` on a text not seen
before (its cache cleared), measured with `time.thread_time`, so other processes on the machine move it
little. "Unbounded" sets MARKDOWN_MAX_CHARS out of reach and MARKDOWN_MAX_CPU_MS to --give-up: that is
Python-Markdown as it ran before the bounds (plus the guards' 1-5%), cut off at --give-up seconds
(shown as "> N s"); a row stops there. "Bounded" uses the settings as configured (defaults unless the
environment says otherwise). Prints Markdown tables for BENCHMARKS.md.
"""

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

ORDINARY = (
    "## Step {i}\n\nHere is a careful answer with **bold**, *emphasis*, `inline code` and a "
    "[link](https://example.org/{i}). It explains the idea in a few sentences, so that the reader can "
    "follow along without trouble.\n\n- first point\n- second point with `code`\n  - nested point\n\n"
    "```python\ndef f{i}(x):\n    return x * {i}\n```\n\n| a | b |\n|---|---|\n| {i} | two |\n\n> a quote\n\n"
)
# Repeated to the size wanted. The first is what people write; the others are the slowest inputs found.
PATTERNS = {
    "ordinary Markdown (headings, lists, code, tables)": None,
    "`*b* ` emphasis (issue #12)": "*b* ",
    "`_a_ ` emphasis": "_a_ ",
    "`a\\n` line breaks": "a\n",
    "`a\\n\\n` paragraphs": "a\n\n",
    "`> ` nested quote": "> ",
    "`- a` nested lists": "- a\n  - b\n    - c\n",
    "`# a\\n` headings": "# a\n",
    "`a\\n---\\n` setext headings": "a\n---\n",
    "`` ``a` `` unclosed code spans": "``a`",
    "`[` unclosed brackets": "[",
    "`[a](` unclosed links": "[a](",
}


def text_of(unit: str | None, size: int) -> str:
    if unit is None:
        text, i = "", 0
        while len(text) < size:
            text += ORDINARY.format(i=i)
            i += 1
        return text[:size]
    return (unit * (size // len(unit) + 1))[:size]


def measure(render, text: str) -> tuple[float, str]:
    """CPU seconds of one render, and what came out: formatted, too long (size), or stopped (time)."""
    started = time.thread_time()
    html = render(text)
    seconds = time.thread_time() - started
    if html.startswith('<p class="format-note"><em>This text is too long'):
        return seconds, "size"
    if html.startswith('<p class="format-note"><em>This text took too long'):
        return seconds, "time"
    return seconds, "formatted"


def cell(seconds: float, outcome: str, give_up: float | None) -> str:
    if give_up is not None and outcome == "time":
        return f"> {give_up:g} s"
    shown = f"{seconds * 1000:,.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.1f} ms"
    return {"formatted": shown, "size": f"{shown} (L)", "time": f"{shown} (T)"}[outcome]


def table(title: str, sizes: list[int], rows: dict[str, list[str]]) -> str:
    lines = [f"**{title}**", "", "| input | " + " | ".join(f"{size:,} chars" for size in sizes) + " |"]
    lines.append("|---|" + "---:|" * len(sizes))
    for name, cells in rows.items():
        lines.append(f"| {name} | " + " | ".join(cells + [""] * (len(sizes) - len(cells))) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000,5000,20000,50000,100000,400000")
    parser.add_argument(
        "--give-up", type=float, default=10, help="seconds after which an unbounded render stops"
    )
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]

    os.environ.setdefault("DEBUG", "1")  # the settings module wants a SECRET_KEY otherwise
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rewardlab.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.conf import settings
    from django.test import override_settings

    from annotation import markdown

    def render(text: str) -> str:
        markdown._render.cache_clear()
        return markdown.render_markdown(text)

    render("warm-up: builds this thread's converter *once*")

    unbounded: dict[str, list[str]] = {}
    with override_settings(MARKDOWN_MAX_CHARS=10**12, MARKDOWN_MAX_CPU_MS=int(args.give_up * 1000)):
        for name, unit in PATTERNS.items():
            unbounded[name] = []
            for size in sizes:
                seconds, outcome = measure(render, text_of(unit, size))
                unbounded[name].append(cell(seconds, outcome, args.give_up))
                print(f"unbounded  {name}: {size:,} {unbounded[name][-1]}", file=sys.stderr, flush=True)
                if outcome == "time":
                    break
    bounded: dict[str, list[str]] = {}
    worst = (0.0, "")
    for name, unit in PATTERNS.items():
        bounded[name] = []
        for size in sizes:
            seconds, outcome = measure(render, text_of(unit, size))
            bounded[name].append(cell(seconds, outcome, None))
            if seconds > worst[0]:
                worst = (seconds, f"{name} at {size:,} chars")
            print(f"bounded    {name}: {size:,} {bounded[name][-1]}", file=sys.stderr, flush=True)

    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load average {os.getloadavg()}")
    print(
        f"Bounds: MARKDOWN_MAX_CHARS={settings.MARKDOWN_MAX_CHARS:,}, "
        f"MARKDOWN_MAX_CPU_MS={settings.MARKDOWN_MAX_CPU_MS}\n"
    )
    print(table("Unbounded (CPU time of one render)", sizes, unbounded), end="\n\n")
    print(table("Bounded: (L) over the size limit, (T) stopped at the CPU limit", sizes, bounded), end="\n\n")
    print(f"Slowest bounded render: {worst[0] * 1000:,.0f} ms ({worst[1]})")


if __name__ == "__main__":
    main()
