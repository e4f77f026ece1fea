"""Model in the loop, simulated: does choosing what people rank by the reward model save labels? (issue #13)

A pool-based simulation on real human data, where the known labels stand in for annotators. Per seed:
a random seed set is labelled, then each round trains with the product's engine and settings (warm
start from the previous round's model), scores the unlabelled pool as the product's scoring pass does
(`training.reward_model.informativeness`: mean Bradley–Terry pair entropy, then the diversity-aware
greedy order over hashed prompt vectors), takes the next batch in each work order and reveals its labels:

- `random`: a uniformly random batch of the unlabelled pool;
- `coverage`: the product's default order, fewest rankings first then by id (here: import order);
- `model`: the top of the scoring pass's order.

Held-out pairwise accuracy is measured after every round on the same held-out groups for every strategy.
Labels are rankings (one per item: a pair for HH, a K=4 ranking for QA-feedback).

    python benchmarks/active_learning.py --data ../shared/data/qa-feedback-dev-rankings.jsonl \\
        --rounds 5 --batch 40 --seeds 3 --strategies random,coverage,model

Ends with one JSON line: each strategy's curve as [[labels, accuracy_mean, accuracy_sd], ...] and
`labels_saved_vs_random` (the fraction of random's full budget that `model` saved to reach random's
final accuracy; 0 when it never did, negative never). On a GPU pass `--base-model` for a larger base.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from training.reward_model import RewardScorer, TrainConfig, read_groups, train  # noqa: E402
from training.reward_model.informativeness import (  # noqa: E402
    diverse_order,
    pair_entropy,
    prompt_vector,
)
from training.reward_model.metrics import ranking_metrics  # noqa: E402
from training.reward_model.modeling import default_base_model  # noqa: E402


def _prompt(group: Any) -> str:
    return next((t["content"] for t in reversed(group.conversation) if t.get("role") == "user"), "")


def _score(model_dir: str, groups: list, args: argparse.Namespace) -> list[list[float]]:
    scorer = RewardScorer(model_dir, max_length=args.max_length, batch_tokens=args.score_batch_tokens)
    return scorer.score_groups([(g.conversation, [a["text"] for a in g.answers]) for g in groups])


def _accuracy(model_dir: str, eval_groups: list, args: argparse.Namespace) -> float:
    scores = _score(model_dir, eval_groups, args)
    figures = ranking_metrics([g.pairs for g in eval_groups], [g.ranking for g in eval_groups], scores)
    return float(figures["pairwise_accuracy"])


def _train(labelled: list, init_from: str | None, out: str, seed: int, args: argparse.Namespace) -> None:
    config = TrainConfig(
        base_model=args.base_model or default_base_model(),
        output_dir=out,
        epochs=args.epochs,
        lr=args.lr,
        max_length=args.max_length,
        batch_tokens=args.batch_tokens,
        seed=seed,
        init_from=init_from,
        show_progress_bar=False,
        eval_every_epoch=False,
    )
    train(config, labelled, on_event=lambda event: None)


def _next_batch(
    strategy: str, unlabelled: list[int], pool: list, model_dir: str, rng: random.Random, args
) -> tuple[list[int], float]:
    if strategy == "random":
        return rng.sample(unlabelled, min(args.batch, len(unlabelled))), 0.0
    if strategy == "coverage":
        return sorted(unlabelled)[: args.batch], 0.0
    started = time.perf_counter()
    rewards = _score(model_dir, [pool[i] for i in unlabelled], args)
    scores = [pair_entropy(r) for r in rewards]
    vectors = np.stack([prompt_vector(_prompt(pool[i])) for i in unlabelled]) if args.diversity > 0 else None
    order = diverse_order(scores, vectors, penalty=args.diversity)
    return [unlabelled[j] for j in order[: args.batch]], time.perf_counter() - started


def run_curve(strategy: str, seed: int, pool: list, eval_groups: list, args, workdir: str) -> dict[str, Any]:
    """One strategy and seed: [(labels, held-out accuracy)] after the seed set and after each round."""
    rng = random.Random(seed)
    labelled = rng.sample(range(len(pool)), args.seed_size)  # the same seed set for every strategy
    strategy_rng = random.Random(f"{seed}:{strategy}")
    curve, scoring_seconds, scored_items, previous = [], 0.0, 0, None
    for round_index in range(args.rounds + 1):
        out = os.path.join(workdir, f"{strategy}-{seed}-{round_index}")
        _train([pool[i] for i in labelled], previous, out, seed, args)
        curve.append((len(labelled), _accuracy(out, eval_groups, args)))
        print(f"{strategy} seed {seed} labels {curve[-1][0]} accuracy {curve[-1][1]:.4f}", file=sys.stderr)
        if round_index == args.rounds:
            break
        chosen = set(labelled)
        unlabelled = [i for i in range(len(pool)) if i not in chosen]
        batch, seconds = _next_batch(strategy, unlabelled, pool, out, strategy_rng, args)
        scoring_seconds += seconds
        scored_items += len(unlabelled) if seconds else 0
        labelled += batch
        previous = out if args.warm_start else None
    return {"curve": curve, "scoring_seconds": scoring_seconds, "scored_items": scored_items}


def labels_saved(model_curve: list, random_curve: list) -> float:
    """The fraction of random's final budget `model` saved to first reach random's final accuracy."""
    budget, target = random_curve[-1][0], random_curve[-1][1]
    for labels, accuracy, _ in model_curve:
        if accuracy >= target:
            return round(max(0.0, 1 - labels / budget), 4)
    return 0.0


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run every strategy over every seed and print the curves as one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--eval-data", default=None, help="default: a held-out part of --data")
    parser.add_argument("--eval-size", type=int, default=300, help="held-out groups (from --data)")
    parser.add_argument("--pool", type=int, default=600, help="most groups in the unlabelled pool")
    parser.add_argument("--seed-size", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=40)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--strategies", default="random,coverage,model")
    parser.add_argument("--base-model", default=None, help="default: the packaged all-MiniLM-L6-v2")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch-tokens", type=int, default=2048)
    parser.add_argument("--score-batch-tokens", type=int, default=16384)
    parser.add_argument("--diversity", type=float, default=0.5, help="penalty on prompt similarity; 0: off")
    parser.add_argument("--no-warm-start", dest="warm_start", action="store_false")
    args = parser.parse_args(argv)

    groups = [g for g in read_groups(args.data) if g.pairs]
    shuffled = random.Random("split").sample(groups, len(groups))
    if args.eval_data:
        eval_groups = [g for g in read_groups(args.eval_data) if g.pairs][: args.eval_size]
        pool_groups = shuffled
    else:
        eval_groups, pool_groups = shuffled[: args.eval_size], shuffled[args.eval_size :]
    # The pool keeps the file's order (what `coverage` follows: ids in import order).
    keep = set(id(g) for g in pool_groups[: args.pool])
    pool = [g for g in groups if id(g) in keep]
    strategies = args.strategies.split(",")
    started = time.perf_counter()
    runs: dict[str, list] = {s: [] for s in strategies}
    with tempfile.TemporaryDirectory(prefix="active-learning-") as workdir:
        for seed in range(args.seeds):
            for strategy in strategies:
                runs[strategy].append(run_curve(strategy, seed, pool, eval_groups, args, workdir))
    curves = {}
    for strategy, results in runs.items():
        points = []
        for step in range(args.rounds + 1):
            values = [r["curve"][step][1] for r in results]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            points.append([results[0]["curve"][step][0], round(statistics.mean(values), 4), round(spread, 4)])
        curves[strategy] = points
    scoring = [r for r in runs.get("model", []) if r["scored_items"]]
    result = {
        "data": os.path.basename(args.data),
        "pool": len(pool),
        "eval_groups": len(eval_groups),
        "eval_pairs": sum(len(g.pairs) for g in eval_groups),
        "seeds": args.seeds,
        "settings": {k: v for k, v in vars(args).items() if k not in ("data", "eval_data")},
        "curves": curves,
        "labels_saved_vs_random": (
            labels_saved(curves["model"], curves["random"]) if {"model", "random"} <= set(curves) else None
        ),
        "scoring_items_per_second": (
            round(sum(r["scored_items"] for r in scoring) / sum(r["scoring_seconds"] for r in scoring), 1)
            if scoring
            else None
        ),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
