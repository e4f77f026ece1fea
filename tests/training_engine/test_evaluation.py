"""Evaluation figures on rewards worked out by hand, then `evaluate` end to end on a tiny model."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest

from training.reward_model import TrainConfig, evaluation_figures, groups_from_records, train
from training.reward_model.evaluation import pair_margins, read_evaluation_groups
from training.reward_model.metrics import (
    accuracy_interval,
    calibration,
    human_ceiling,
    length_bias,
    spearman_correlation,
)

REPO = Path(__file__).resolve().parents[2]
REQUIRED_KEYS = {
    "pairwise_accuracy",
    "accuracy_ci",
    "length_correlation",
    "accuracy_longer_preferred",
    "accuracy_shorter_preferred",
    "ece",
    "subsets",
}


def length_pairs(n: int, *, seed: int = 0) -> list[dict]:
    """Pair rows of `n` prompts: the first half prefer the longer answer, the second half the shorter."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        short, long = sorted(rng.sample(range(1, 30), 2))
        shorter, longer = " ".join(["yes"] * short), " ".join(["yes"] * long)
        longer_wins = i < n // 2
        rows.append(
            {
                "prompt": f"question {i}",
                "chosen": longer if longer_wins else shorter,
                "rejected": shorter if longer_wins else longer,
                "subset": "longer-wins" if longer_wins else "shorter-wins",
            }
        )
    return rows


def rewards_by_length(groups) -> list[list[float]]:
    return [[float(len(answer["text"])) for answer in group.answers] for group in groups]


def test_a_model_that_scores_by_length_is_caught_by_the_length_figures():
    groups = groups_from_records(length_pairs(40), slices=True)

    figures = evaluation_figures(groups, rewards_by_length(groups))

    assert figures["length_correlation"] == pytest.approx(1.0)
    assert figures["accuracy_longer_preferred"] == 1.0 and figures["pairs_longer_preferred"] == 20
    assert figures["accuracy_shorter_preferred"] == 0.0 and figures["pairs_shorter_preferred"] == 20
    assert figures["pairwise_accuracy"] == 0.5
    assert figures["subsets"] == {"longer-wins": 1.0, "shorter-wins": 0.0}
    assert figures["slice_pairs"]["subsets"] == {"longer-wins": 20, "shorter-wins": 20}
    assert figures.keys() >= REQUIRED_KEYS


def test_length_figures_by_hand():
    # Rewards 1, 2, 3 for lengths 10, 20, 30, and one reversed: ranks (1,2,3,4) against (1,2,4,3).
    assert spearman_correlation([10, 20, 30, 40], [1, 2, 4, 3]) == pytest.approx(0.8)
    assert spearman_correlation([10, 20, 30], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman_correlation([10, 10, 10], [1, 2, 3]) is None  # no spread in length
    figures = length_bias(
        [10, 20, 30], [1.0, 2.0, 3.0], [(30, 10), (20, 10), (10, 20), (10, 10)], [2.0, -1.0, 0.5, 0.0]
    )
    assert figures["accuracy_longer_preferred"] == 0.5 and figures["pairs_longer_preferred"] == 2
    assert figures["accuracy_shorter_preferred"] == 1.0 and figures["pairs_shorter_preferred"] == 1
    assert figures["pairs_same_length"] == 1


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_calibrated_margins_have_an_expected_calibration_error_near_zero():
    rng = random.Random(1)
    margins = []
    for _ in range(20_000):
        margin = rng.gauss(0, 2)
        # People prefer a with probability σ(r_a − r_b): the model is calibrated by construction.
        a_preferred = rng.random() < sigmoid(margin)
        margins.append(margin if a_preferred else -margin)  # as (preferred, other)

    figures = calibration(margins)

    assert figures["ece"] < 0.02
    for bin in figures["calibration"]:
        if bin["pairs"] > 500:
            assert bin["observed"] == pytest.approx(bin["predicted"], abs=0.04)
    # The same outcomes with rewards five times as far apart: an overconfident model.
    assert calibration([5 * m for m in margins])["ece"] > 0.1


def test_calibration_by_hand():
    # One pair, margin 0: σ = 0.5 both ways, observed 1 and 0 in the same bin: perfectly calibrated.
    assert calibration([0.0])["ece"] == pytest.approx(0.0)
    # Two pairs at margin ln 3 (σ = 0.75), one right and one wrong: bins 0.75 and 0.25 observe 0.5.
    figures = calibration([math.log(3), -math.log(3)])
    assert figures["ece"] == pytest.approx(0.25)
    upper = next(b for b in figures["calibration"] if b["low"] == 0.7)
    assert (upper["pairs"], upper["predicted"], upper["observed"]) == (2, 0.75, 0.5)
    assert calibration([])["ece"] is None


def test_accuracy_interval_resamples_items_and_holds_the_accuracy():
    # 100 items of one pair each, 70 right: about 0.70 ± 1.96 · √(0.21/100).
    low, high = accuracy_interval([1] * 70 + [0] * 30, [1] * 100)
    assert low == pytest.approx(0.61, abs=0.025) and high == pytest.approx(0.79, abs=0.025)
    # The same 70 % in items of 6 pairs that are all right or all wrong: six times the pairs, but the
    # pairs of an item are one draw, so the interval stays as wide as with 100 pairs.
    low6, high6 = accuracy_interval([6] * 70 + [0] * 30, [6] * 100)
    assert high6 - low6 == pytest.approx(high - low, abs=0.03)
    assert accuracy_interval([3, 3], [3, 3]) == [1.0, 1.0]
    assert accuracy_interval([], []) is None


def test_human_ceiling_by_hand():
    # A and B rank 0 > 1 > 2, C ranks 1 > 0 > 2. Against the others' merge: A and B each have (0, 2) and
    # (1, 2) ordered (the merge ties 0 and 1) and agree; C has all three ordered and agrees on two.
    rankings = [("A", [[0], [1], [2]]), ("B", [[0], [1], [2]]), ("C", [[1], [0], [2]])]
    figures = human_ceiling([(rankings, [2.0, 3.0, 1.0])])
    assert figures["ceiling_pairs"] == 7
    assert figures["human_ceiling"] == pytest.approx(6 / 7)
    # Rewards 2, 3, 1 order every one of those seven pairs as its annotator did.
    assert figures["accuracy_on_ceiling_pairs"] == 1.0
    assert (figures["ceiling_items"], figures["ceiling_annotators"]) == (1, 3)
    # One annotator alone (or rankings without names) gives no ceiling.
    assert human_ceiling([([("A", [[0], [1]]), ("", [[1], [0]])], [1.0, 0.0])])["human_ceiling"] is None


def export_row(item_id: int, answers: list[str], ranking: list[list[int]], annotator: str, **extra) -> dict:
    """A row of our `rankings` export: answers with ids, the ranking by id."""
    return {
        "item_id": item_id,
        "conversation": [{"role": "user", "content": f"question {item_id}"}],
        "answers": [{"id": 100 * item_id + k, "text": text} for k, text in enumerate(answers)],
        "ranking": [[100 * item_id + k for k in level] for level in ranking],
        "annotator": annotator,
        **extra,
    }


def test_rankings_export_rows_give_the_ceiling_flags_and_import_batches(tmp_path):
    rows = [
        export_row(1, ["good", "fine", "bad"], [[0], [1], [2]], "annotator-a", flags={"102": ["spam"]}),
        export_row(1, ["good", "fine", "bad"], [[0], [1], [2]], "annotator-b"),
        export_row(1, ["good", "fine", "bad"], [[1], [0], [2]], "annotator-c"),
        export_row(2, ["yes", "no"], [[0], [1]], "import:7", import_batch="#7 oasst.jsonl"),
    ]
    path = tmp_path / "eval.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))

    groups = read_evaluation_groups(path)
    figures = evaluation_figures(groups, [[2.0, 3.0, 1.0], [1.0, 0.0]])

    annotators = [read.annotator for read in groups[0].rankings_read]
    assert annotators == ["annotator-a", "annotator-b", "annotator-c"]
    assert groups[0].flags == {2: ["spam"]}
    assert figures["human_ceiling"] == pytest.approx(6 / 7) and figures["accuracy_on_ceiling_pairs"] == 1.0
    # Pairs with the flagged answer 102: (100, 102) and (101, 102) from each of the three annotators.
    assert figures["flags"] == {"spam": 1.0} and figures["slice_pairs"]["flags"] == {"spam": 6}
    assert figures["import_batches"] == {"#7 oasst.jsonl": 1.0}
    # Item 1: 9 pairs, of which C's (1 > 0) the model gets right and A's and B's (0 > 1) wrong.
    assert (figures["pairs"], figures["pairwise_accuracy"]) == (10, 8 / 10)
    # The same pair stated by two annotators is one line of the margins file.
    margins = pair_margins(groups, [[2.0, 3.0, 1.0], [1.0, 0.0]])
    assert len(margins) == 5
    assert {"group": "1", "better": "100", "worse": "101", "margin": -1.0} in margins


def test_the_subset_field_can_be_renamed():
    rows = [{**row, "category": row.pop("subset")} for row in length_pairs(4)]
    groups = groups_from_records(rows, slices=True, subset_field="category")
    figures = evaluation_figures(groups, rewards_by_length(groups))
    assert figures["subsets"] == {"longer-wins": 1.0, "shorter-wins": 0.0}


@pytest.fixture(scope="module")
def length_model(tiny_bert_dir, tmp_path_factory):
    """A tiny BERT trained on pairs where the longer answer always wins: it learns to score by length."""
    groups = groups_from_records([row for row in length_pairs(400, seed=2) if row["subset"] == "longer-wins"])
    out = tmp_path_factory.mktemp("length_model")
    config = TrainConfig(
        base_model=tiny_bert_dir,
        output_dir=str(out),
        epochs=3,
        lr=3e-3,
        max_length=48,
        batch_tokens=2048,
        show_progress_bar=False,
    )
    train(config, groups)
    return out


def test_evaluate_command_prints_every_figure_for_a_model_that_scores_by_length(length_model, tmp_path):
    data = tmp_path / "eval.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in length_pairs(60, seed=3)))
    suite = tmp_path / "suite.jsonl"
    suite.write_text("".join(json.dumps(row) + "\n" for row in length_pairs(10, seed=4)))
    pairs_file = tmp_path / "pairs.jsonl"

    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "training.reward_model",
            "evaluate",
            "--model",
            str(length_model),
            "--data",
            str(data),
            "--subset-field",
            "subset",
            "--suite",
            f"small={suite}",
            "--pairs-output",
            str(pairs_file),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr[-2000:]
    lines = completed.stdout.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert result.keys() >= REQUIRED_KEYS
    assert result["length_correlation"] > 0.9
    assert result["accuracy_longer_preferred"] >= 0.95 and result["accuracy_shorter_preferred"] <= 0.05
    assert result["subsets"]["longer-wins"] >= 0.95 and result["subsets"]["shorter-wins"] <= 0.05
    low, high = result["accuracy_ci"]
    assert low <= result["pairwise_accuracy"] <= high
    assert set(result["suites"]) == {"small"} and result["suites"]["small"].keys() >= REQUIRED_KEYS
    assert len(pairs_file.read_text().splitlines()) == 60


def test_training_reports_held_out_and_suite_figures_and_writes_pair_margins(tiny_bert_dir, tmp_path):
    from training.reward_model.evaluation import suites_read

    rows = length_pairs(80, seed=5)
    suite = tmp_path / "suite.jsonl"
    suite.write_text("".join(json.dumps(row) + "\n" for row in rows[:10]))
    eval_groups = groups_from_records(rows[60:], slices=True)
    config = TrainConfig(
        base_model=tiny_bert_dir,
        output_dir=str(tmp_path / "model"),
        epochs=1,
        max_length=48,
        show_progress_bar=False,
    )

    result = train(config, groups_from_records(rows[:60]), eval_groups, suites=suites_read([f"s1={suite}"]))

    assert result["evaluation"]["pairs"] == result["eval"]["pairs"] == 20
    assert result["evaluation"]["pairwise_accuracy"] == result["eval"]["pairwise_accuracy"]
    assert result["evaluation"].keys() >= REQUIRED_KEYS and result["suites"]["s1"].keys() >= REQUIRED_KEYS
    assert result["suites"]["s1"]["pairs"] == 10 and len(result["suites"]["s1"]["sha256"]) == 64
    assert result["evaluation_cpu_seconds"] >= 0
    written = tmp_path / "model" / "evaluation"
    assert len((written / "held_out.jsonl").read_text().splitlines()) == 20
    assert len((written / "suite-s1.jsonl").read_text().splitlines()) == 10


def test_the_evaluation_cost_benchmark_ranks_the_demo_twice_and_writes_a_rewardbench_shaped_suite(tmp_path):
    import gzip
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "evaluation_cost", REPO / "benchmarks" / "evaluation_cost.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    hh = tmp_path / "hh"
    hh.mkdir()
    for name in bench.HH_FILES.values():
        with gzip.open(hh / name, "wt") as out:
            for n in range(3):
                out.write(
                    json.dumps(
                        {
                            "chosen": f"\n\nHuman: q{n}\n\nAssistant: yes",
                            "rejected": f"\n\nHuman: q{n}\n\nAssistant: no",
                        }
                    )
                    + "\n"
                )

    demo = [
        json.loads(line) for line in bench.demo_ranked_write(tmp_path / "demo.jsonl").read_text().splitlines()
    ]
    suite = [
        json.loads(line)
        for line in bench.suite_write(tmp_path / "suite.jsonl", 5, hh).read_text().splitlines()
    ]

    assert len(demo) == 72 and {row["annotator"] for row in demo} == {"annotator-1", "annotator-2"}
    assert [row["subset"] for row in suite] == ["hh-helpful-base"] * 3 + ["hh-helpful-online"] * 2
    assert bench.build_parser().parse_args([]).repeats == 2
