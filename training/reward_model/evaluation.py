"""What the engine says about a trained model on an evaluation file, for `evaluate` and for each training run.

`evaluation_figures` turns a file's groups and the model's reward of every answer into one JSON object:
accuracy with an interval, the human ceiling on the same pairs, length bias, calibration and accuracy per
subset, flag and import batch (`metrics` has each figure's definition). `final_evaluation` is what a
training run adds after its last epoch: the figures of the held-out split (already scored by the last
check) and of every suite, and each file's per-pair margins, written beside the model so that versions can
be compared pair by pair (`pair_margins_write`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .data import Group, ReadReport, file_sha256, pairs_from_ranking, read_groups
from .metrics import (
    accuracy_interval,
    calibration,
    human_ceiling,
    length_bias,
    margin_accuracy,
    ranking_metrics,
    slice_accuracy,
)

# How many (length, reward) points the figures keep for a plot of reward against length.
LENGTH_POINTS = 200
EVALUATION_DIRECTORY = "evaluation"
HELD_OUT_NAME = "held_out"

Scorer = Callable[[Sequence[Group]], list[list[float]]]


@dataclass
class Suite:
    """An evaluation file a run scores its model on, besides its own held-out split."""

    name: str
    path: str
    groups: list[Group]
    sha256: str
    report: ReadReport


def read_evaluation_groups(
    path: str | Path, fmt: str = "auto", *, subset_field: str = "subset", report: ReadReport | None = None
) -> list[Group]:
    """An evaluation file's groups, with the annotators, tags and flags its figures are broken down by."""
    return read_groups(path, fmt, report, slices=True, subset_field=subset_field)


def suites_read(specs: Sequence[str], fmt: str = "auto", *, subset_field: str = "subset") -> list[Suite]:
    """Read `NAME=FILE` specifications (the `--suite` option) into suites; names must differ."""
    suites: list[Suite] = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"a suite is NAME=FILE, not {spec!r}")
        if any(suite.name == name for suite in suites):
            raise ValueError(f"two suites are named {name!r}")
        report = ReadReport()
        groups = read_evaluation_groups(path, fmt, subset_field=subset_field, report=report)
        suites.append(Suite(name, str(Path(path).resolve()), groups, file_sha256(path), report))
    return suites


@dataclass(frozen=True)
class _ScoredPair:
    group: int
    better: int
    worse: int
    margin: float
    annotator: str
    tags: dict[str, str]


def _scored_pairs(groups: Sequence[Group], scores: Sequence[Sequence[float]]) -> list[_ScoredPair]:
    """Every preference pair of every group with the model's margin r(better) − r(worse) and its source."""
    pairs = []
    for g, (group, rewards) in enumerate(zip(groups, scores, strict=True)):
        if group.rankings_read is None:  # read without slices: pairs alone, no annotators or tags
            sources = [("", {}, pair) for pair in group.pairs]
        else:
            sources = [
                (read.annotator, read.tags, pair)
                for read in group.rankings_read
                for pair in pairs_from_ranking(read.order)
            ]
        for annotator, tags, (better, worse) in sources:
            pairs.append(_ScoredPair(g, better, worse, rewards[better] - rewards[worse], annotator, tags))
    return pairs


def evaluation_figures(
    groups: Sequence[Group], scores: Sequence[Sequence[float]], *, seed: int = 0
) -> dict[str, Any]:
    """Every figure of a model on an evaluation file, from its groups and each answer's reward."""
    figures: dict[str, Any] = ranking_metrics([g.pairs for g in groups], [g.ranking for g in groups], scores)
    pairs = _scored_pairs(groups, scores)
    correct = [0] * len(groups)
    total = [0] * len(groups)
    for pair in pairs:
        correct[pair.group] += pair.margin > 0
        total[pair.group] += 1
    figures["accuracy_ci"] = accuracy_interval(correct, total, seed=seed)
    figures["accuracy_ci_method"] = "bootstrap over items (95%, 1000 resamples)"

    lengths = [len(answer["text"]) for group in groups for answer in group.answers]
    rewards = [reward for group_scores in scores for reward in group_scores]
    pair_lengths = [
        (len(groups[p.group].answers[p.better]["text"]), len(groups[p.group].answers[p.worse]["text"]))
        for p in pairs
    ]
    figures.update(length_bias(lengths, rewards, pair_lengths, [p.margin for p in pairs]))
    step = max(1, len(lengths) // LENGTH_POINTS)
    figures["length_points"] = [
        [length, round(reward, 4)] for length, reward in list(zip(lengths, rewards, strict=True))[::step]
    ][:LENGTH_POINTS]

    figures.update(calibration([p.margin for p in pairs]))
    figures.update(
        human_ceiling(
            [
                ([(read.annotator, read.order) for read in group.rankings_read or ()], group_scores)
                for group, group_scores in zip(groups, scores, strict=True)
            ]
        )
    )

    slice_pairs: dict[str, dict[str, int]] = {}
    for key, labelled in (
        ("subsets", [(p.tags["subset"], p.margin) for p in pairs if "subset" in p.tags]),
        ("import_batches", [(p.tags["import_batch"], p.margin) for p in pairs if "import_batch" in p.tags]),
        ("flags", [(label, p.margin) for p in pairs for label in _pair_flags(groups[p.group], p)]),
    ):
        figures[key], slice_pairs[key] = slice_accuracy(labelled)
    unflagged = [p.margin for p in pairs if not _pair_flags(groups[p.group], p)]
    figures["unflagged_accuracy"] = margin_accuracy(unflagged)
    figures["unflagged_pairs"] = len(unflagged)
    figures["slice_pairs"] = slice_pairs
    return figures


def _pair_flags(group: Group, pair: _ScoredPair) -> list[str]:
    """The labels anyone put on either answer of the pair, each once."""
    labels = [*group.flags.get(pair.better, ()), *group.flags.get(pair.worse, ())]
    return sorted(set(labels))


def pair_margins(groups: Sequence[Group], scores: Sequence[Sequence[float]]) -> list[dict[str, Any]]:
    """Each distinct pair (group id, better answer id, worse answer id) with the model's margin on it."""
    seen: set[tuple[str, str, str]] = set()
    rows = []
    for group, rewards in zip(groups, scores, strict=True):
        for better, worse in group.pairs:
            key = (group.id, group.answers[better]["id"], group.answers[worse]["id"])
            if key in seen:
                continue
            seen.add(key)
            rows.append(
                {
                    "group": key[0],
                    "better": key[1],
                    "worse": key[2],
                    "margin": round(rewards[better] - rewards[worse], 6),
                }
            )
    return rows


def pair_margins_write(path: str | Path, groups: Sequence[Group], scores: Sequence[Sequence[float]]) -> None:
    """Write `pair_margins` as JSON lines (what the web side compares two versions with)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for row in pair_margins(groups, scores):
            out.write(json.dumps(row, ensure_ascii=False) + "\n")


def suite_file_name(name: str) -> str:
    """The pair-margins file of a suite in a model's evaluation directory (names may hold any character)."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:80]
    return f"suite-{safe}.jsonl"


def suites_figures(
    suites: Sequence[Suite], score: Scorer, directory: Path | None = None
) -> dict[str, dict[str, Any]]:
    """Each suite's figures by name, with its file's digest; its pair margins written under `directory`."""
    figures = {}
    for suite in suites:
        scores = score(suite.groups)
        figures[suite.name] = {
            **evaluation_figures(suite.groups, scores),
            "sha256": suite.sha256,
            "skipped_rows": suite.report.skipped,
        }
        if directory is not None:
            pair_margins_write(directory / suite_file_name(suite.name), suite.groups, scores)
    return figures


def final_evaluation(
    *,
    held_out: Sequence[Group],
    held_out_scores: Sequence[Sequence[float]] | None,
    suites: Sequence[Suite],
    score: Scorer,
    output_dir: str | Path | None,
) -> dict[str, Any]:
    """The figures a training run reports after its last epoch, timed, with pair margins under `output_dir`.

    `held_out_scores` are the rewards the last held-out check computed (None when there was none); each
    suite is scored here through `score`, which every process of a distributed run must call alike.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    directory = Path(output_dir) / EVALUATION_DIRECTORY if output_dir else None
    figures = None
    if held_out and held_out_scores is not None:
        figures = evaluation_figures(held_out, held_out_scores)
        if directory is not None:
            pair_margins_write(directory / f"{HELD_OUT_NAME}.jsonl", held_out, held_out_scores)
    return {
        "evaluation": figures,
        "suites": suites_figures(suites, score, directory),
        "evaluation_seconds": round(time.perf_counter() - wall, 3),
        "evaluation_cpu_seconds": round(time.process_time() - cpu, 3),
    }
