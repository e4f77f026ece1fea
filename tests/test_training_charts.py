"""The staff pages' charts: a first loss point is visible, and version and step axes tick at whole numbers."""

import re

from training.charts import Series, line_chart_svg, series_chart_svg


def _x_ticks(svg: str) -> list[str]:
    # x ticks are the centred tick labels under the plot (y ticks are right-aligned).
    return re.findall(r'<text class="tick" x="[\d.]+" y="[\d.]+" text-anchor="middle">([^<]*)</text>', svg)


def test_a_loss_chart_with_one_logged_step_shows_that_point():
    svg = line_chart_svg(points=[(10, 0.69)], title="loss", x_label="step", y_label="loss", integer_x=True)

    assert svg.count('<circle class="point"') == 1
    assert "10: 0.69" in svg


def test_a_chart_of_several_points_draws_its_line_without_markers_unless_asked():
    svg = line_chart_svg(points=[(10, 0.69), (20, 0.5)], title="loss", x_label="step", y_label="loss")

    assert '<path class="line"' in svg and "<circle" not in svg


def test_the_version_axis_of_one_version_shows_that_version_only():
    svg = line_chart_svg(
        points=[(1, 0.7)],
        title="accuracy",
        x_label="version",
        y_label="accuracy",
        markers=True,
        integer_x=True,
    )

    assert _x_ticks(svg) == ["1"]


def test_the_version_axis_never_shows_fractions():
    two = line_chart_svg(
        points=[(1, 0.7), (2, 0.8)], title="a", x_label="version", y_label="a", integer_x=True
    )
    many = series_chart_svg(
        series=[Series("all", [(v, 0.5) for v in range(1, 40)])],
        title="a",
        x_label="version",
        y_label="a",
        integer_x=True,
    )

    assert _x_ticks(two) == ["1", "2"]
    assert all(t.isdigit() for t in _x_ticks(many)) and 2 <= len(_x_ticks(many)) <= 9
