"""Benchmark: what the evaluation figures and a suite add to a training run (issue #15's "at most 15 %").

Each run is the engine's `train` in a fresh child process, as the training worker starts it: the packaged
MiniLM, the engine's defaults (one epoch, max length 512), a tenth of the items held out by id. Two runs per
repeat, in alternating order:

- plain: no suite; the run still computes every figure of the held-out split after its last epoch;
- suite: the same, plus one RewardBench-shaped suite (pairs with a `subset`) scored and reported.

The engine times what it adds after the last epoch (`evaluation_seconds`, `evaluation_cpu_seconds`: the
held-out figures, scoring and figures of the suites, the pair-margin files), so each run gives its own
overhead, extra / (run − extra); the suite's cost also shows as the difference between the two runs. The
suite has as many pairs as the data's held-out split (pairs drawn from the Anthropic HH test files, subset
= the file), i.e. one more evaluation split's worth. The active version's one-off `evaluate` on a suite it
has no figures for (the first run after a suite with a promotion rule is uploaded) is timed too.

CPU time of the child (all its threads, from the kernel) is the figure to read on a shared machine;
torch runs on `--threads` threads.

    python benchmarks/evaluation_cost.py --dataset demo --dataset qa-feedback --repeats 2 \\
        --json-out benchmarks/results/evaluation_cost.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEMO_FILE = REPO / "annotation" / "demo" / "demo_rankings.jsonl"
DATASETS = {
    # The demo project once its two annotators ranked every item (`demo_ranked_write`).
    "demo": Path("demo-ranked.jsonl"),
    "qa-feedback": Path(os.environ.get("SHARED_DATA", "/work/shared/data"))
    / "qa-feedback-dev-rankings.jsonl",
}
HH_FILES = {
    "hh-helpful-base": "hh-helpful-base-test.jsonl.gz",
    "hh-helpful-online": "hh-helpful-online-test.jsonl.gz",
}
EVAL_FRACTION = 0.1


def demo_ranked_write(path: Path) -> Path:
    """The demo's 36 items as `make run`'s two annotators would leave them: each ranked twice.

    The demo file ranks only a few items (the rest wait for people). Here the first annotator keeps the
    file's ranking where it has one and otherwise an order drawn per item; the second agrees but for
    every third item, where the top two change places.
    """
    import random

    with DEMO_FILE.open(encoding="utf-8") as rows, path.open("w", encoding="utf-8") as out:
        for number, line in enumerate(rows):
            row = json.loads(line)
            order = row.get("ranking") or random.Random(number).sample(
                range(len(row["answers"])), len(row["answers"])
            )
            second = list(order)
            if number % 3 == 0:
                second[0], second[1] = second[1], second[0]
            for annotator, ranking in (("annotator-1", order), ("annotator-2", second)):
                out.write(json.dumps({**row, "ranking": ranking, "annotator": annotator}) + "\n")
    return path


def held_out_pairs(data: Path) -> int:
    """How many pairs the engine's own split holds out of `data` (what `--eval-fraction` leaves out)."""
    from training.reward_model import read_groups, split_groups

    _, held_out = split_groups(read_groups(data), EVAL_FRACTION)
    return sum(len(g.pairs) for g in held_out)


def suite_write(path: Path, pairs: int, shared_data: Path) -> Path:
    """A RewardBench-shaped suite: `pairs` HH test pairs, `subset` naming the file each came from."""
    per_file = [pairs // 2 + pairs % 2, pairs // 2]
    with path.open("w", encoding="utf-8") as out:
        for (subset, name), count in zip(HH_FILES.items(), per_file, strict=True):
            with gzip.open(shared_data / name, "rt", encoding="utf-8") as rows:
                for _, line in zip(range(count), rows, strict=False):
                    row = json.loads(line)
                    out.write(
                        json.dumps({"chosen": row["chosen"], "rejected": row["rejected"], "subset": subset})
                    )
                    out.write("\n")
    return path


def child_run(command: list[str], threads: int) -> dict[str, Any]:
    """Run one engine command; its result line with the child's wall and CPU seconds."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{completed.stderr[-3000:]}")
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_seconds": round(wall, 2), "cpu_seconds": round(cpu, 2), "result": result}


def train_once(data: Path, output: Path, suite: Path | None, threads: int) -> dict[str, Any]:
    """One `train` child; the engine's own figures of what its evaluation after training cost."""
    command = [sys.executable, "-m", "training.reward_model", "train", "--data", str(data)]
    command += ["--output", str(output), "--eval-fraction", str(EVAL_FRACTION), "--no-progress-bar"]
    if suite is not None:
        command += ["--suite", f"bench={suite}"]
    measured = child_run(command, threads)
    result = measured.pop("result")
    extra_cpu = result["evaluation_cpu_seconds"]
    return {
        **measured,
        "train_cpu_seconds": result["train_cpu_seconds"],
        "evaluation_seconds": result["evaluation_seconds"],
        "evaluation_cpu_seconds": extra_cpu,
        # The run without what it added after training: the denominator of the overhead.
        "overhead_of_cpu": round(extra_cpu / (measured["cpu_seconds"] - extra_cpu), 4),
        "overhead_of_wall": round(
            result["evaluation_seconds"] / (measured["wall_seconds"] - result["evaluation_seconds"]), 4
        ),
        "held_out_pairs": (result.get("evaluation") or {}).get("pairs"),
        "held_out_accuracy": (result.get("evaluation") or {}).get("pairwise_accuracy"),
        "suite": {
            name: {key: figures.get(key) for key in ("pairs", "pairwise_accuracy", "subsets")}
            for name, figures in (result.get("suites") or {}).items()
        },
    }


def dataset_bench(name: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Every repeat of the plain and the suite run on one data file, and the one-off evaluate."""
    data = demo_ranked_write(work / DATASETS[name]) if name == "demo" else DATASETS[name]
    pairs = args.suite_pairs or held_out_pairs(data)
    suite = suite_write(work / f"suite-{name}.jsonl", pairs, Path(args.shared_data))
    runs: list[dict[str, Any]] = []
    for repeat in range(args.repeats):
        order = ["plain", "suite"] if repeat % 2 == 0 else ["suite", "plain"]
        for kind in order:
            output = work / f"{name}-{repeat}-{kind}"
            run = train_once(data, output, suite if kind == "suite" else None, args.threads)
            runs.append({"repeat": repeat + 1, "kind": kind, **run})
            print(json.dumps({"dataset": name, **runs[-1]}), file=sys.stderr)
    model = work / f"{name}-0-plain"
    one_off = child_run(
        [
            sys.executable,
            "-m",
            "training.reward_model",
            "evaluate",
            "--model",
            str(model),
            "--suite",
            f"bench={suite}",
        ],
        args.threads,
    )
    one_off.pop("result")
    plain_cpu = [r["cpu_seconds"] for r in runs if r["kind"] == "plain"]
    suite_cpu = [r["cpu_seconds"] for r in runs if r["kind"] == "suite"]
    suite_extra = [r["evaluation_cpu_seconds"] for r in runs if r["kind"] == "suite"]
    per_pair = sum(suite_extra) / len(suite_extra) / pairs
    return {
        "dataset": name,
        "data": str(data),
        "suite_pairs": pairs,
        "runs": runs,
        "max_overhead_of_cpu": max(r["overhead_of_cpu"] for r in runs),
        "suite_run_minus_plain_run_cpu": round(
            sum(suite_cpu) / len(suite_cpu) - sum(plain_cpu) / len(plain_cpu), 2
        ),
        "active_version_evaluate_on_suite": one_off,
        "suite_cpu_seconds_per_pair": round(per_pair, 4),
        # How large a suite of these pairs may be before the run's extra time passes 15 %.
        "suite_pairs_within_15_percent": int(0.15 * min(plain_cpu) / per_pair),
    }


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", action="append", choices=sorted(DATASETS), default=None)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each child")
    parser.add_argument("--suite-pairs", type=int, default=None, help="default: the held-out split's pairs")
    parser.add_argument("--shared-data", default=str(DATASETS["qa-feedback"].parent))
    parser.add_argument("--json-out", default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print (and optionally write) one JSON object."""
    args = build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rewardlab-evalcost-") as tmp:
        results = [dataset_bench(name, args, Path(tmp)) for name in args.dataset or ["demo", "qa-feedback"]]
    report = {
        "event": "result",
        "machine": {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count()},
        "load_average": os.getloadavg(),
        "threads": args.threads,
        "datasets": results,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json_out:
        Path(args.json_out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
