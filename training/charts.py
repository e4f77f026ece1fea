"""Small charts drawn as SVG on the server: no charting library to vendor, readable without JS."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 640, 220
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 52, 16, 14, 34


def _ticks(low: float, high: float, count: int = 4) -> list[float]:
    if high == low:
        return [low]
    return [low + (high - low) * i / count for i in range(count + 1)]


def _integer_ticks(low: float, high: float, count: int = 8) -> list[float]:
    """Whole numbers only (versions, steps), at most about `count` of them."""
    first, last = math.ceil(low), math.floor(high)
    if last < first:
        return []
    stride = max(1, math.ceil((last - first) / count))
    return [float(v) for v in range(first, last + 1, stride)]


def _label(value: float) -> str:
    if abs(value) >= 100 or float(value).is_integer():
        return f"{value:.0f}"
    return f"{value:.3g}"


def _empty(title_text: str) -> SafeString:
    return mark_safe(
        f'<svg class="chart" role="img" aria-label="{title_text}: no data yet" viewBox="0 0 {WIDTH} 60">'
        f'<text x="{WIDTH / 2}" y="34" text-anchor="middle" class="chart-empty">'
        f"{title_text}: no data yet</text>"
        "</svg>"
    )


class _Frame:
    """The plot area of one chart: scales from data to pixels, and the grid, ticks and axis labels."""

    def __init__(
        self,
        x_range: tuple[float, float],
        y_range: tuple[float, float],
        height: int = HEIGHT,
        top: int = MARGIN_TOP,
        integer_x: bool = False,
    ):
        self.x_low, self.x_high = x_range
        self.y_low, self.y_high = y_range
        if self.y_high == self.y_low:
            self.y_low, self.y_high = self.y_low - 0.5, self.y_high + 0.5
        if self.x_high == self.x_low:
            pad = 0.5 if integer_x else 1
            self.x_low, self.x_high = self.x_low - pad, self.x_high + pad
        self.integer_x = integer_x
        self.height, self.top = height, top
        self.plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
        self.plot_h = height - top - MARGIN_BOTTOM

    def sx(self, x: float) -> float:
        return MARGIN_LEFT + (x - self.x_low) / (self.x_high - self.x_low) * self.plot_w

    def sy(self, y: float) -> float:
        return self.top + (1 - (y - self.y_low) / (self.y_high - self.y_low)) * self.plot_h

    def opening(self, title_text: str) -> list[str]:
        """The svg element, its title, the grid with its ticks: the parts every chart starts with."""
        parts = [
            f'<svg class="chart" role="img" aria-label="{title_text}" viewBox="0 0 {WIDTH} {self.height}" '
            f'preserveAspectRatio="xMidYMid meet"><title>{title_text}</title>'
        ]
        for tick in _ticks(self.y_low, self.y_high):
            y = self.sy(tick)
            right = WIDTH - MARGIN_RIGHT
            parts.append(
                f'<line class="grid" x1="{MARGIN_LEFT}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}"/>'
                f'<text class="tick" x="{MARGIN_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
                f"{_label(tick)}</text>"
            )
        x_ticks = _integer_ticks if self.integer_x else _ticks
        for tick in x_ticks(self.x_low, self.x_high):
            x = self.sx(tick)
            parts.append(
                f'<text class="tick" x="{x:.1f}" y="{self.height - MARGIN_BOTTOM + 16}" text-anchor="middle">'
                f"{_label(tick)}</text>"
            )
        return parts

    def axis_labels(self, x_label: str, y_label: str) -> str:
        middle = self.top + self.plot_h / 2
        return (
            f'<text class="axis-label" x="{MARGIN_LEFT + self.plot_w / 2}" y="{self.height - 4}" '
            f'text-anchor="middle">{escape(x_label)}</text>'
            f'<text class="axis-label" x="12" y="{middle}" text-anchor="middle" '
            f'transform="rotate(-90 12 {middle})">{escape(y_label)}</text>'
        )

    def path(self, points: Sequence[tuple[float, float]], css_class: str) -> str:
        d = " ".join(
            f"{'M' if i == 0 else 'L'}{self.sx(x):.1f},{self.sy(y):.1f}" for i, (x, y) in enumerate(points)
        )
        return f'<path class="{css_class}" d="{d}"/>'


def line_chart_svg(
    *,
    points: Sequence[tuple[float, float]],
    title: str,
    x_label: str,
    y_label: str,
    y_range: tuple[float, float] | None = None,
    highlight: Sequence[tuple[float, float]] = (),
    markers: bool = False,
    integer_x: bool = False,
) -> SafeString:
    """An accessible SVG line chart of (x, y) points; `highlight` points get a ring (the active model).

    `integer_x`: x is a count (a step, a version), so its ticks fall on whole numbers only.
    """
    title_text = escape(title)
    if not points:
        return _empty(title_text)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    frame = _Frame((min(xs), max(xs)), y_range if y_range else (min(ys), max(ys)), integer_x=integer_x)
    parts = frame.opening(title_text)
    parts.append(frame.axis_labels(x_label, y_label))
    parts.append(frame.path(points, "line"))
    # A path of one point draws nothing: the first logged loss needs a marker to be seen.
    if markers or len(points) == 1:
        for x, y in points:
            parts.append(
                f'<circle class="point" cx="{frame.sx(x):.1f}" cy="{frame.sy(y):.1f}" r="3.5">'
                f"<title>{_label(x)}: {_label(y)}</title></circle>"
            )
    for x, y in highlight:
        parts.append(f'<circle class="highlight" cx="{frame.sx(x):.1f}" cy="{frame.sy(y):.1f}" r="6"/>')
    parts.append("</svg>")
    return mark_safe("".join(parts))  # every interpolated text above went through escape()


@dataclass(frozen=True)
class Series:
    """One named set of points of a chart; `style` picks its colour (CSS class `series-<style>`)."""

    name: str
    points: Sequence[tuple[float, float]]
    style: str = "a"
    lines: bool = True
    markers: bool = True
    # Whiskers (x, low, high), e.g. a confidence interval at each point.
    whiskers: Sequence[tuple[float, float, float]] = ()
    dashed: bool = False
    radius: float = 3


def series_chart_svg(
    *,
    series: Sequence[Series],
    title: str,
    x_label: str,
    y_label: str,
    x_range: tuple[float, float] | None = None,
    y_range: tuple[float, float] | None = None,
    diagonal: bool = False,
    height: int = 260,
    integer_x: bool = False,
) -> SafeString:
    """An accessible SVG chart of several series with a legend: lines, points, whiskers, a y = x guide."""
    title_text = escape(title)
    every = [p for s in series for p in s.points]
    if not every:
        return _empty(title_text)
    xs = [p[0] for p in every]
    ys = [p[1] for p in every] + [y for s in series for _, low, high in s.whiskers for y in (low, high)]
    # The legend runs along the top, above the plot, so that it never hides a point.
    frame = _Frame(
        x_range or (min(xs), max(xs)),
        y_range or (min(ys), max(ys)),
        height,
        top=MARGIN_TOP + 20,
        integer_x=integer_x,
    )
    parts = frame.opening(title_text)
    parts.append(frame.axis_labels(x_label, y_label))
    if diagonal:
        low, high = max(frame.x_low, frame.y_low), min(frame.x_high, frame.y_high)
        parts.append(frame.path([(low, low), (high, high)], "guide"))
    for s in series:
        style = escape(s.style)
        for x, low, high in s.whiskers:
            parts.append(
                f'<line class="whisker series-{style}" x1="{frame.sx(x):.1f}" x2="{frame.sx(x):.1f}" '
                f'y1="{frame.sy(low):.1f}" y2="{frame.sy(high):.1f}"/>'
            )
        if s.lines and len(s.points) > 1:
            parts.append(frame.path(s.points, f"line series-{style}{' dashed' if s.dashed else ''}"))
        if s.markers:
            name = escape(s.name)
            for x, y in s.points:
                parts.append(
                    f'<circle class="point series-{style}" cx="{frame.sx(x):.1f}" cy="{frame.sy(y):.1f}" '
                    f'r="{s.radius}"><title>{name}: {_label(x)}, {_label(y)}</title></circle>'
                )
    x, y = MARGIN_LEFT, MARGIN_TOP
    for s in series:
        parts.append(
            f'<rect class="legend-key series-{escape(s.style)}" x="{x}" y="{y - 4}" width="10" height="10"/>'
            f'<text class="legend" x="{x + 14}" y="{y + 5}">{escape(s.name)}</text>'
        )
        x += 30 + 6 * len(s.name)  # about the width of the name at 11px
    parts.append("</svg>")
    return mark_safe("".join(parts))  # every interpolated text above went through escape()
