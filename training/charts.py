"""Small line charts drawn as SVG on the server: no charting library to vendor, readable without JS."""

from __future__ import annotations

from collections.abc import Sequence

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 640, 220
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 52, 16, 14, 34


def _ticks(low: float, high: float, count: int = 4) -> list[float]:
    if high == low:
        return [low]
    return [low + (high - low) * i / count for i in range(count + 1)]


def _label(value: float) -> str:
    if abs(value) >= 100 or float(value).is_integer():
        return f"{value:.0f}"
    return f"{value:.3g}"


def line_chart_svg(
    *,
    points: Sequence[tuple[float, float]],
    title: str,
    x_label: str,
    y_label: str,
    y_range: tuple[float, float] | None = None,
    highlight: Sequence[tuple[float, float]] = (),
    markers: bool = False,
) -> SafeString:
    """An accessible SVG line chart of (x, y) points; `highlight` points get a ring (the active model)."""
    title_text = escape(title)
    if not points:
        return mark_safe(
            f'<svg class="chart" role="img" aria-label="{title_text}: no data yet" viewBox="0 0 {WIDTH} 60">'
            f'<text x="{WIDTH / 2}" y="34" text-anchor="middle" class="chart-empty">'
            f"{title_text}: no data yet</text>"
            "</svg>"
        )
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x_low, x_high = min(xs), max(xs)
    y_low, y_high = y_range if y_range else (min(ys), max(ys))
    if y_high == y_low:
        y_low, y_high = y_low - 0.5, y_high + 0.5
    if x_high == x_low:
        x_low, x_high = x_low - 1, x_high + 1
    plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM

    def sx(x: float) -> float:
        return MARGIN_LEFT + (x - x_low) / (x_high - x_low) * plot_w

    def sy(y: float) -> float:
        return MARGIN_TOP + (1 - (y - y_low) / (y_high - y_low)) * plot_h

    parts = [
        f'<svg class="chart" role="img" aria-label="{title_text}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'preserveAspectRatio="xMidYMid meet"><title>{title_text}</title>'
    ]
    for tick in _ticks(y_low, y_high):
        y = sy(tick)
        parts.append(
            f'<line class="grid" x1="{MARGIN_LEFT}" x2="{WIDTH - MARGIN_RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="tick" x="{MARGIN_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{_label(tick)}</text>"
        )
    for tick in _ticks(x_low, x_high):
        x = sx(tick)
        parts.append(
            f'<text class="tick" x="{x:.1f}" y="{HEIGHT - MARGIN_BOTTOM + 16}" text-anchor="middle">'
            f"{_label(tick)}</text>"
        )
    parts.append(
        f'<text class="axis-label" x="{MARGIN_LEFT + plot_w / 2}" y="{HEIGHT - 4}" text-anchor="middle">'
        f"{escape(x_label)}</text>"
        f'<text class="axis-label" x="12" y="{MARGIN_TOP + plot_h / 2}" text-anchor="middle" '
        f'transform="rotate(-90 12 {MARGIN_TOP + plot_h / 2})">{escape(y_label)}</text>'
    )
    path = " ".join(f"{'M' if i == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}" for i, (x, y) in enumerate(points))
    parts.append(f'<path class="line" d="{path}"/>')
    if markers:
        for x, y in points:
            parts.append(
                f'<circle class="point" cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3.5">'
                f"<title>{_label(x)}: {_label(y)}</title></circle>"
            )
    for x, y in highlight:
        parts.append(f'<circle class="highlight" cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="6"/>')
    parts.append("</svg>")
    return mark_safe("".join(parts))  # every interpolated text above went through escape()
