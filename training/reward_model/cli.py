"""Command line of the reward-model engine: `python -m training.reward_model {train,evaluate,score}`.

Output protocol (for a parent process such as the web app's job runner)
----------------------------------------------------------------------
stdout carries only JSON objects, one per line, each with an "event" key; tqdm bars, warnings and logs go
to stderr. A parent reads stdout line by line:

``train``
    {"event": "start", "command": "train", "arguments": {...}}
    {"event": "read", "rows": n, "groups": n, "skipped_rows": {reason: count}}   rows left out, with why
    {"event": "data", "train_groups": n, "eval_groups": n, "train_answers": n, "train_pairs": n,
     "truncated_answers": n, "tokenize_seconds": s}
    {"event": "progress", "step": n, "total_steps": N, "epoch": float, "loss": x, "grad_norm": x, "lr": x,
     "elapsed_seconds": s, "answers_seen": n, "tokens_seen": n}        grad_norm: before clipping
                                                 every --log-every optimizer steps and at the last step
    {"event": "epoch", "epoch": e, "seconds": s, "step": n}
    {"event": "eval", "epoch": e, "step": n, "pairwise_accuracy": x, "pairs": n, "items": n,
     "best_vs_worst_accuracy": x, "ranked_items": n, "kendall_tau": x}       after each epoch
    {"event": "result", "output_dir": ..., "train_seconds": s, "answers_per_second": x,
     "tokens_per_second": x, "peak_memory_mb": x, "grad_norm_mean": x, "grad_norm_max": x,
     "clipped_step_fraction": x, "eval": {...metrics...}, ...}                     always the last line
    The result also holds "evaluation" (the figures below, on the held-out split; null without one) and
    "suites" ({name: figures} for each --suite NAME=FILE), and the model directory an "evaluation/"
    folder: held_out.jsonl and suite-NAME.jsonl, one line per distinct pair, {"group", "better",
    "worse", "margin"} (answer ids, and the model's r(better) - r(worse)).
``evaluate``
    one line: {"event": "result", "pairwise_accuracy": x, "accuracy_ci": [low, high], "pairs": n,
     "items": n, "human_ceiling": x, "length_correlation": x, "accuracy_longer_preferred": x,
     "accuracy_shorter_preferred": x, "ece": x, "calibration": [bins], "subsets": {name: x},
     "flags": {label: x}, "import_batches": {name: x}, ..., "suites": {name: figures}}
    The figures are defined in `metrics` and computed by `evaluation.evaluation_figures`, the same code
    a training run uses; --pairs-output FILE writes the pair margins as above. With --suite alone (no
    --data) the line holds only "suites".
``score``
    one line per distinct answer of each item, rows of one item or prompt merged as ``train`` reads them:
    {"event": "score", "group_id": ..., "answer_id": ..., "answer_index": k, "reward": x},
    then {"event": "result", "answers": n, "groups": n}
    group_id and answer_id are the keys the importer gives the same file (`preferences.readers`): the
    row's id (or item_id, or the Open-Assistant prompter message_id), else "sha256:" and the digest of
    the conversation; the answer's own id (or message_id), else "sha256:" and the digest of the group
    id and the text (`preferences.conversations.answer_key`): for files without ids, join on those.

Input: every format the importer reads (`--format auto` tells them apart by the first row): Open-Assistant
trees (also bare root messages with nested replies) and message rows, ranking rows (the plain shape and
our `rankings` / `consensus` exports), and pairs (TRL explicit, conversational or HH-implicit; our `pairs`
and `pairs-chat` exports); as .jsonl, .jsonl.gz, a JSON array or Parquet. A malformed row stops the run
with FILE:LINE and what is wrong; rows that state no preference are counted in "skipped_rows".

On failure the last line is {"event": "error", "error": "<message>"} and the exit status is 1; bad
arguments exit with status 2 and argparse's usage message on stderr (no JSON). Only the main process
prints under torchrun / accelerate launch.

Several GPUs or nodes: the same entry point under a launcher, e.g.
    torchrun --nproc-per-node 8 -m training.reward_model train --data D --output O
    accelerate launch --multi_gpu -m training.reward_model train --data D --output O
Each process takes its share of the token-budget batches; throughput figures are totals over processes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .data import FORMATS, Group, ReadReport, file_sha256, read_groups, split_groups
from .evaluation import (
    evaluation_figures,
    pair_margins_write,
    read_evaluation_groups,
    suites_figures,
    suites_read,
)
from .loss import LOSSES


def _emit(event: dict[str, Any]) -> None:
    # Only rank 0 speaks, so a parent reading stdout sees one stream even under torchrun.
    if os.environ.get("RANK", "0") != "0":
        return
    sys.stdout.write(json.dumps(event, default=str) + "\n")
    sys.stdout.flush()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of all three commands."""
    parser = argparse.ArgumentParser(
        prog="python -m training.reward_model", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a reward model on preference data")
    t.add_argument(
        "--data", required=True, help="rankings / consensus / pairs / pairs-chat (.jsonl[.gz], .parquet)"
    )
    t.add_argument("--format", default="auto", choices=FORMATS)
    t.add_argument(
        "--base-model", default=None, help="hub id or local path (default: packaged all-MiniLM-L6-v2)"
    )
    t.add_argument("--output", required=True, help="directory for the trained model")
    t.add_argument("--epochs", type=int, default=1)
    t.add_argument("--lr", type=float, default=5e-5)
    t.add_argument("--weight-decay", type=float, default=0.0)
    t.add_argument("--warmup-ratio", type=float, default=0.0)
    t.add_argument("--max-length", type=int, default=512)
    t.add_argument("--batch-tokens", type=int, default=8192, help="padded tokens per micro-batch")
    t.add_argument("--max-groups-per-batch", type=int, default=None)
    t.add_argument("--eval-batch-tokens", type=int, default=16384, help="padded tokens per inference batch")
    t.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    t.add_argument("--eval-fraction", type=float, default=0.1, help="held-out share, split by item id")
    t.add_argument("--eval-data", default=None, help="separate held-out file (then no split of --data)")
    t.add_argument("--loss", default="kwise", choices=LOSSES)
    t.add_argument(
        "--center-rewards-coefficient",
        type=float,
        default=None,
        help="TRL's reward centring: adds this times the mean of (r_chosen + r_rejected)^2 over pairs",
    )
    t.add_argument("--seed", type=int, default=42)
    t.add_argument(
        "--bf16", action=argparse.BooleanOptionalAction, default=None, help="default: on if CUDA has it"
    )
    t.add_argument("--tf32", action=argparse.BooleanOptionalAction, default=True)
    t.add_argument("--gradient-checkpointing", action="store_true")
    t.add_argument("--torch-compile", action="store_true")
    t.add_argument("--attn-implementation", default=None, help="e.g. sdpa, flash_attention_2, eager")
    t.add_argument("--max-grad-norm", type=float, default=1.0)
    t.add_argument("--max-steps", type=int, default=None)
    t.add_argument("--log-every", type=int, default=10)
    t.add_argument("--no-progress-bar", action="store_true")
    t.add_argument(
        "--shared-prompt",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="decoders: each group's prompt forwarded once, its answers after it (default: wherever the "
        "model computes it exactly)",
    )
    t.add_argument("--row-tokens", type=int, default=None, help="shortest packed row (default: max length)")
    t.add_argument("--lora-r", type=int, default=0, help="LoRA rank (0: train every weight)")
    t.add_argument("--lora-alpha", type=float, default=None, help="LoRA scale numerator (default: 2 x rank)")
    t.add_argument("--lora-dropout", type=float, default=0.0)
    t.add_argument(
        "--lora-target-modules",
        default=None,
        help="comma-separated module names to adapt, e.g. q_proj,v_proj (default: every linear layer)",
    )
    t.add_argument(
        "--init-from", default=None, help="warm start: a reward model directory to continue training from"
    )
    _evaluation_arguments(t)

    # Both inference commands take the same arguments: a trained model and a file to run it on.
    for command, help_text in (
        ("evaluate", "held-out metrics of a trained model"),
        ("score", "reward of every answer in a file"),
    ):
        p = sub.add_parser(command, help=help_text)
        p.add_argument("--model", required=True)
        # `evaluate` may be given suites alone.
        p.add_argument("--data", required=command == "score")
        p.add_argument("--format", default="auto", choices=FORMATS)
        p.add_argument("--batch-tokens", type=int, default=16384)
        p.add_argument("--device", default=None)
        if command == "evaluate":
            _evaluation_arguments(p)
            p.add_argument("--pairs-output", default=None, help="write each pair's margin here (JSON lines)")
    return parser


def _evaluation_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--subset-field",
        default="subset",
        help="the row field whose value names a pair's subset (RewardBench's `subset`)",
    )
    parser.add_argument(
        "--suite",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="also evaluate on this file, reported under its name (repeatable)",
    )


def _read(path: str, fmt: str, subset_field: str | None = None) -> tuple[list, ReadReport]:
    """A file's groups and what was left out; with `subset_field`, read as an evaluation file."""
    report = ReadReport()
    if subset_field is None:
        groups = read_groups(path, fmt, report)
    else:
        groups = read_evaluation_groups(path, fmt, subset_field=subset_field, report=report)
    return groups, report


def cmd_train(args: argparse.Namespace) -> dict[str, Any]:
    """Run `train` and return its result record."""
    from .trainer import TrainConfig, train

    _emit({"event": "start", "command": "train", "arguments": vars(args)})
    # The held-out groups are read as evaluation files are, for the figures after the last epoch.
    groups, report = _read(args.data, args.format, None if args.eval_data else args.subset_field)
    if args.eval_data:
        train_groups = groups
        eval_groups, eval_report = _read(args.eval_data, args.format, args.subset_field)
    else:
        train_groups, eval_groups = split_groups(groups, args.eval_fraction)
    suites = suites_read(args.suite, args.format, subset_field=args.subset_field)
    _emit({"event": "read", "rows": report.rows, "groups": report.groups, "skipped_rows": report.skipped})
    config = TrainConfig(
        base_model=args.base_model,
        output_dir=args.output,
        epochs=args.epochs,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_ratio=args.warmup_ratio,
        max_length=args.max_length,
        batch_tokens=args.batch_tokens,
        max_groups_per_batch=args.max_groups_per_batch,
        eval_batch_tokens=args.eval_batch_tokens,
        grad_accum=args.grad_accum,
        loss=args.loss,
        center_rewards_coefficient=args.center_rewards_coefficient,
        seed=args.seed,
        bf16=args.bf16,
        tf32=args.tf32,
        gradient_checkpointing=args.gradient_checkpointing,
        torch_compile=args.torch_compile,
        attn_implementation=args.attn_implementation,
        max_grad_norm=args.max_grad_norm or None,
        max_steps=args.max_steps,
        log_every=args.log_every,
        show_progress_bar=not args.no_progress_bar,
        shared_prompt=args.shared_prompt,
        row_tokens=args.row_tokens,
        lora_r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        lora_target_modules=args.lora_target_modules.split(",") if args.lora_target_modules else None,
        init_from=args.init_from,
    )
    extra = {
        "data_file": str(Path(args.data).resolve()),
        "data_sha256": file_sha256(args.data),
        "eval_fraction": None if args.eval_data else args.eval_fraction,
        "eval_data_file": args.eval_data,
        "eval_data_sha256": file_sha256(args.eval_data) if args.eval_data else None,
        "read_report": {"rows": report.rows, "groups": report.groups, "skipped": report.skipped},
    }
    return train(config, train_groups, eval_groups, on_event=_emit, extra_metadata=extra, suites=suites)


def cmd_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Run `evaluate` and return the figures record (the file's figures, then each suite's)."""
    from .modeling import RewardScorer, score_encoded

    if not args.data and not args.suite:
        raise ValueError("evaluate needs --data, --suite or both")
    scorer = RewardScorer(args.model, device=args.device, batch_tokens=args.batch_tokens)
    suites = suites_read(args.suite, args.format, subset_field=args.subset_field)

    def score(some: Sequence[Group]) -> list[list[float]]:
        encoded = scorer.encode(some)
        return score_encoded(
            scorer.model, encoded, scorer.tokenizer.pad_token_id, args.batch_tokens, scorer.device
        )

    # The same figures a training run computes after its last epoch, on this file and on the suites.
    record: dict[str, Any] = {"event": "result"}
    if args.data:
        groups, report = _read(args.data, args.format, args.subset_field)
        scores = score(groups)
        record.update(evaluation_figures(groups, scores), skipped_rows=report.skipped)
        if args.pairs_output:
            pair_margins_write(args.pairs_output, groups, scores)
    return {**record, "suites": suites_figures(suites, score), "model": args.model}


def cmd_score(args: argparse.Namespace) -> dict[str, Any]:
    """Run `score`, printing one line per distinct answer of each item, and return the summary record."""
    from .data import read_groups
    from .modeling import RewardScorer, score_encoded

    scorer = RewardScorer(args.model, device=args.device, batch_tokens=args.batch_tokens)
    # Read as `train` and `evaluate` read the file (rows of one item or prompt merged, an answer in several
    # pairs kept once); scoring needs no preferences, so unranked items are kept too.
    groups = read_groups(args.data, args.format, keep_unranked=True)
    encoded = scorer.encode(groups)
    scores = score_encoded(
        scorer.model, encoded, scorer.tokenizer.pad_token_id, args.batch_tokens, scorer.device
    )
    n_answers = 0
    for g, s in zip(groups, scores, strict=True):
        for k, (answer, reward) in enumerate(zip(g.answers, s, strict=True)):
            _emit(
                {
                    "event": "score",
                    "group_id": g.id,
                    "answer_id": answer["id"],
                    "answer_index": k,
                    "reward": reward,
                }
            )
            n_answers += 1
    return {"event": "result", "answers": n_answers, "groups": len(groups)}


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    args = build_parser().parse_args(argv)
    try:
        result = {"train": cmd_train, "evaluate": cmd_evaluate, "score": cmd_score}[args.command](args)
    except Exception as exc:  # the parent needs a parseable last line whatever went wrong
        logging.getLogger(__name__).exception("reward_model %s failed", args.command)
        _emit({"event": "error", "error": f"{type(exc).__name__}: {exc}"})
        return 1
    _emit(result)
    return 0
