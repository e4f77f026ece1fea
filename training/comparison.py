"""Reads for the versions pages: each version's figures, suites across versions, two versions side by side.

A version's figures are what its run's engine reported after the last epoch (`RewardModel.metrics`:
"evaluation" on the project's evaluation split, "suites" per suite, also kept as `SuiteResult` rows).
The charts are SVG drawn here (`charts`), so the pages need no script.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db.models import QuerySet
from django.utils.safestring import SafeString

from annotation.models import Answer, Item, Project

from .charts import Series, series_chart_svg
from .diagnostics import version_flips
from .models import EvaluationSuite, RewardModel, SuiteResult

# The columns of the suites table on the versions page: the newest versions.
SUITE_TABLE_VERSIONS = 8


def version_figures(reward_model: RewardModel) -> dict[str, Any]:
    """The version's figures on the project's evaluation split ({} for versions older than them)."""
    return (reward_model.metrics or {}).get("evaluation") or {}


@dataclass
class FigureRow:
    """One line of the side-by-side table: a figure's name and its value for each version, shown as text."""

    label: str
    a: str
    b: str
    note: str = ""


def _number(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _interval(value: Any) -> str:
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int | float) for v in value):
        return f"{value[0]:.3f} – {value[1]:.3f}"
    return "–"


def _with_count(accuracy: Any, pairs: Any) -> str:
    return "–" if accuracy is None else f"{_number(accuracy)} ({pairs or 0} pairs)"


def _value(key: str) -> Callable[[dict[str, Any]], str]:
    return lambda figures: _number(figures.get(key))


def _counted(key: str, count_key: str) -> Callable[[dict[str, Any]], str]:
    return lambda figures: _with_count(figures.get(key), figures.get(count_key))


def _pairs_items(figures: dict[str, Any]) -> str:
    return f"{figures['pairs']} / {figures.get('items', '–')}" if figures.get("pairs") is not None else "–"


# The side-by-side table's fixed lines: title, how a version's figures show it, and a note.
FIGURES: list[tuple[str, Callable[[dict[str, Any]], str], str]] = [
    ("Pairwise accuracy", _value("pairwise_accuracy"), ""),
    (
        "95% interval",
        lambda figures: _interval(figures.get("accuracy_ci")),
        "bootstrap over items: an item's pairs share its answers, so they are resampled together",
    ),
    ("Evaluation pairs / items", _pairs_items, ""),
    ("Kendall τ (mean per item)", _value("kendall_tau"), ""),
    ("Best above worst", _value("best_vs_worst_accuracy"), ""),
    (
        "Human ceiling",
        _counted("human_ceiling", "ceiling_pairs"),
        "how often one annotator agrees with the others' consensus, on the pairs the consensus orders",
    ),
    (
        "Model on the ceiling's pairs",
        _value("accuracy_on_ceiling_pairs"),
        "the model against each annotator, on the same pairs",
    ),
    (
        "Length correlation",
        _value("length_correlation"),
        "Spearman's ρ between an answer's reward and its length in characters",
    ),
    (
        "Accuracy, longer answer preferred",
        _counted("accuracy_longer_preferred", "pairs_longer_preferred"),
        "",
    ),
    (
        "Accuracy, shorter answer preferred",
        _counted("accuracy_shorter_preferred", "pairs_shorter_preferred"),
        "far below the longer-preferred figure: the model rewards length",
    ),
    (
        "Expected calibration error",
        _value("ece"),
        "of σ(r_a − r_b) as the chance that people prefer a; 0 is perfectly calibrated",
    ),
    ("Pairs without flagged answers", _counted("unflagged_accuracy", "unflagged_pairs"), ""),
]


def figure_rows(a: dict[str, Any], b: dict[str, Any]) -> list[FigureRow]:
    """Every figure of two versions' evaluations, in the order the page shows them."""
    rows = [FigureRow(title, show(a), show(b), note) for title, show, note in FIGURES]
    for key, title in (("flags", "Flagged “{}”"), ("import_batches", "Import {}"), ("subsets", "Subset {}")):
        for name in sorted(set(a.get(key) or {}) | set(b.get(key) or {})):
            rows.append(
                FigureRow(
                    title.format(name),
                    _with_count((a.get(key) or {}).get(name), _slice_count(a, key, name)),
                    _with_count((b.get(key) or {}).get(name), _slice_count(b, key, name)),
                )
            )
    return rows


def _slice_count(figures: dict[str, Any], key: str, name: str) -> int:
    return int(((figures.get("slice_pairs") or {}).get(key) or {}).get(name) or 0)


@dataclass
class SuiteTable:
    """One suite's accuracy, overall and per subset, across versions (None where a version has none)."""

    suite: EvaluationSuite
    rows: list[tuple[str, list[float | None]]] = field(default_factory=list)


def suite_tables(*, project: Project, versions: list[RewardModel]) -> list[SuiteTable]:
    """For each suite of the project, its accuracy overall and per subset for each of `versions`."""
    results = {
        (r.suite_id, r.reward_model_id): r.figures
        for r in SuiteResult.objects.filter(reward_model__in=versions).only(
            "suite", "reward_model", "figures"
        )
    }
    tables = []
    for suite in EvaluationSuite.objects.filter(project=project).order_by("name"):
        figures = [results.get((suite.pk, v.pk)) or {} for v in versions]
        subsets = sorted({name for f in figures for name in (f.get("subsets") or {})})
        rows = [("all", [f.get("pairwise_accuracy") for f in figures])]
        rows += [(name, [(f.get("subsets") or {}).get(name) for f in figures]) for name in subsets]
        tables.append(SuiteTable(suite, rows))
    return tables


def versions_for_tables(*, project: Project) -> list[RewardModel]:
    """The newest versions, oldest first: the columns of the suites table."""
    newest = RewardModel.objects.filter(project=project).order_by("-version")[:SUITE_TABLE_VERSIONS]
    return sorted(newest, key=lambda v: v.version)


def accuracy_by_version_chart(*, project: Project, marked: tuple[RewardModel, ...] = ()) -> SafeString:
    """Accuracy of every version with its interval, the human ceiling, and the marked versions ringed."""
    versions = list(RewardModel.objects.filter(project=project).order_by("version"))
    points, whiskers, ceiling = [], [], []
    for v in versions:
        figures = version_figures(v)
        if v.pairwise_accuracy is not None:
            points.append((v.version, v.pairwise_accuracy))
        if isinstance(figures.get("accuracy_ci"), list) and len(figures["accuracy_ci"]) == 2:
            whiskers.append((v.version, *figures["accuracy_ci"]))
        if figures.get("human_ceiling") is not None:
            ceiling.append((v.version, figures["human_ceiling"]))
    series = [Series("accuracy (95% interval)", points, style="all", whiskers=whiskers)]
    if ceiling:
        series.append(Series("human ceiling", ceiling, style="ceiling", dashed=True))
    for style, v in zip(("a", "b"), marked, strict=False):
        if v.pairwise_accuracy is not None:
            point = [(v.version, v.pairwise_accuracy)]
            series.append(Series(f"v{v.version}", point, style=style, lines=False, radius=6))
    return series_chart_svg(
        series=series,
        title="Pairwise accuracy on the evaluation split, by version",
        x_label="version",
        y_label="accuracy",
        y_range=(0.0, 1.0),
        integer_x=True,
    )


def calibration_chart(*, versions: tuple[RewardModel, ...]) -> SafeString:
    """Observed preference rate against σ(r_a − r_b), bin by bin, for each version; y = x is calibrated."""
    series = []
    for style, v in zip(("a", "b"), versions, strict=False):
        bins = version_figures(v).get("calibration") or []
        points = [(b["predicted"], b["observed"]) for b in bins if b.get("pairs")]
        series.append(
            Series(f"v{v.version} (ECE {_number(version_figures(v).get('ece'))})", points, style=style)
        )
    return series_chart_svg(
        series=series,
        title="Calibration: how often people preferred a when the model gave σ(r_a − r_b)",
        x_label="σ(r_a − r_b), mean of the bin",
        y_label="share preferred",
        x_range=(0.0, 1.0),
        y_range=(0.0, 1.0),
        diagonal=True,
    )


def length_chart(*, versions: tuple[RewardModel, ...]) -> SafeString:
    """Each version's reward of a sample of evaluation answers against the answer's length."""
    series = []
    for style, v in zip(("a", "b"), versions, strict=False):
        figures = version_figures(v)
        points = [(length, reward) for length, reward in figures.get("length_points") or []]
        rho = _number(figures.get("length_correlation"), 2)
        series.append(Series(f"v{v.version} (ρ {rho})", points, style=style, lines=False))
    return series_chart_svg(
        series=series,
        title="Reward against answer length",
        x_label="answer length (characters)",
        y_label="reward",
    )


@dataclass
class FlippedPair:
    """A held-out pair whose order changed between the versions, with its texts when the item still exists."""

    item_id: str
    prompt: str
    better: str
    worse: str
    margin_a: float
    margin_b: float


def flipped_pairs(*, project: Project, a: RewardModel, b: RewardModel) -> dict[str, Any] | None:
    """Counts and a sample of the pairs whose order changed from `a` to `b`, their texts looked up."""
    flips = version_flips(newer_directory=b.artifact_path, older_directory=a.artifact_path)
    if flips is None:
        return None
    sample = flips["sample"]
    answer_ids = {int(p[k]) for p in sample for k in ("better", "worse") if str(p[k]).isdigit()}
    item_ids = {int(p["item"]) for p in sample if str(p["item"]).isdigit()}
    answers = dict(Answer.objects.filter(pk__in=answer_ids, item__project=project).values_list("pk", "text"))
    prompts = {
        item.pk: _last_user_turn(item.conversation)
        for item in Item.objects.filter(pk__in=item_ids, project=project).only("conversation")
    }
    flips["pairs"] = [
        FlippedPair(
            item_id=p["item"],
            prompt=prompts.get(_int(p["item"]), ""),
            better=answers.get(_int(p["better"]), ""),
            worse=answers.get(_int(p["worse"]), ""),
            margin_a=p["previous_margin"],
            margin_b=p["margin"],
        )
        for p in sample
    ]
    return flips


def _int(value: Any) -> int | None:
    return int(value) if str(value).isdigit() else None


def _last_user_turn(conversation: Any) -> str:
    for turn in reversed(conversation or []):
        if isinstance(turn, dict) and turn.get("role") == "user":
            return str(turn.get("content", ""))
    return ""


def versions_of_project(*, project: Project) -> QuerySet[RewardModel]:
    """The project's versions, newest first, for the comparison's choices."""
    return RewardModel.objects.filter(project=project).order_by("-version")


def versions_compare(*, project: Project, a: RewardModel, b: RewardModel) -> dict[str, Any]:
    """Everything the comparison page shows of two versions (a the older when they differ)."""
    versions = (a, b)
    return {
        "a": a,
        "b": b,
        "rows": figure_rows(version_figures(a), version_figures(b)),
        "suite_tables": suite_tables(project=project, versions=list(versions)),
        "accuracy_svg": accuracy_by_version_chart(project=project, marked=versions),
        "calibration_svg": calibration_chart(versions=versions),
        "length_svg": length_chart(versions=versions),
        "flips": flipped_pairs(project=project, a=a, b=b),
    }
