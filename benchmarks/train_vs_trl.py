"""Benchmark: our K-wise reward-model trainer against TRL's RewardTrainer, same model, data and steps.

Both trainers get the same base model, the same tokens (rendered once by `training.reward_model.render`,
so TRL's max-length filter drops nothing), the same max length, learning rate, schedule, epochs, seed
and the same number of preference pairs per optimizer step. Each run is a fresh child process so that
peak memory is per run. Held-out accuracy of both models is measured by the same code on the same
held-out items (split by item id).

    python benchmarks/train_vs_trl.py                      # K=4 rankings and K=2 pairs, MiniLM, CPU
    python benchmarks/train_vs_trl.py --settings 4 --repeats 2 --json-out bench.json
    python benchmarks/train_vs_trl.py --settings decoder --threads 1   # shared prompts, decoder, K=4

`--settings decoder` trains a small Qwen2-shaped decoder built from a config (no download) on ranked
groups of K=4 with long multi-turn prompts (about 5x an answer's length) three ways: our engine with
each group's prompt forwarded once (the shared-prompt layout), our engine without sharing (each answer
with its own copy of the prompt, padded per batch), and TRL's RewardTrainer on every ordered pair. Its
JSON ends with `speedup_vs_trl` and `speedup_vs_unshared`, CPU-time ratios per epoch.

TRL comes from the optional `bench` extra (`pip install -e .[bench]`).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _data(args: argparse.Namespace, k: int):
    from training.reward_model import groups_from_records, split_groups
    from training.reward_model.synthetic import synthetic_records

    n_items = args.k2_items if k == 2 and args.k2_items else args.items
    groups = groups_from_records(synthetic_records(n_items, k=k, seed=args.seed))
    return split_groups(groups, args.eval_fraction)


# A Qwen2-shaped decoder of about 23M parameters: 8 layers, 512 wide, grouped-query attention 8/2.
DECODER_SHAPE = dict(
    hidden_size=512,
    intermediate_size=1408,
    num_hidden_layers=8,
    num_attention_heads=8,
    num_key_value_heads=2,
    max_position_embeddings=4096,
    tie_word_embeddings=False,
)
DECODER_TRAINERS = ("shared", "unshared", "trl")


def _decoder_data(args: argparse.Namespace):
    from training.reward_model import groups_from_records, split_groups
    from training.reward_model.synthetic import long_prompt_records

    rows = long_prompt_records(
        args.decoder_items,
        k=4,
        seed=args.seed,
        turns=3,
        prompt_words=(args.prompt_words, args.prompt_words * 3 // 2),
        answer_words=(args.answer_words, args.answer_words * 3 // 2),
    )
    return split_groups(groups_from_records(rows), args.eval_fraction)


def _decoder_model(args: argparse.Namespace) -> tuple[Any, Any]:
    """The same randomly initialised decoder for every trainer (seeded), with the synthetic tokenizer."""
    import torch
    from transformers import Qwen2Config, Qwen2ForSequenceClassification

    from training.reward_model.modeling import configure_reward_head
    from training.reward_model.synthetic import synthetic_tokenizer

    tokenizer = synthetic_tokenizer(2000)
    config = Qwen2Config(vocab_size=len(tokenizer), num_labels=1, **DECODER_SHAPE)
    config._attn_implementation = "sdpa"
    torch.manual_seed(args.seed)
    model = Qwen2ForSequenceClassification(config)
    configure_reward_head(model, tokenizer)
    return model, tokenizer


def run_decoder(args: argparse.Namespace, trainer: str) -> dict[str, Any]:
    """One epoch of one trainer on the decoder setting; tokens counted as each trainer forwards them."""
    import torch

    from training.reward_model import train
    from training.reward_model.batching import encode_group
    from training.reward_model.trainer import evaluate_groups

    train_groups, eval_groups = _decoder_data(args)
    model, tokenizer = _decoder_model(args)
    train_pairs = sum(len(g.pairs) for g in train_groups)
    if trainer != "trl":
        config = dataclasses.replace(
            _our_config(args, 6), max_length=args.decoder_max_length, shared_prompt=trainer == "shared"
        )
        events: list[dict[str, Any]] = []
        result = train(
            config, train_groups, eval_groups, on_event=events.append, model=model, tokenizer=tokenizer
        )
        data = next(e for e in events if e["event"] == "data")
        seconds, cpu_seconds, metrics = result["train_seconds"], result["train_cpu_seconds"], result["eval"]
        tokens, padding, steps = data["train_tokens"], result["padding_fraction"], result["steps"]
    else:
        import datasets
        from trl import RewardConfig, RewardTrainer

        encoded = [encode_group(g, tokenizer, args.decoder_max_length) for g in train_groups]
        rows = [
            {"chosen_ids": e.input_ids[b], "rejected_ids": e.input_ids[w]}
            for e in encoded
            for b, w in e.pairs
        ]
        trl_config = RewardConfig(
            output_dir=str(Path(args.workdir) / "trl-decoder"),
            per_device_train_batch_size=args.pairs_per_step,
            num_train_epochs=1,
            learning_rate=args.lr,
            lr_scheduler_type="linear",
            warmup_steps=0,
            weight_decay=0.0,
            max_grad_norm=args.max_grad_norm or float("inf"),
            max_length=args.decoder_max_length,
            bf16=False,  # RewardConfig turns bf16 on by default; fp32 like ours
            gradient_checkpointing=False,
            disable_dropout=True,
            seed=args.seed,
            logging_steps=1,
            save_strategy="no",
            eval_strategy="no",
            report_to="none",
            disable_tqdm=True,
        )
        trl = RewardTrainer(
            model=model,
            args=trl_config,
            train_dataset=datasets.Dataset.from_list(rows),
            processing_class=tokenizer,
        )
        start, cpu_start = time.perf_counter(), time.process_time()
        trl.train()
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        eval_enc = [encode_group(g, tokenizer, args.decoder_max_length) for g in eval_groups]
        with torch.no_grad():
            metrics = evaluate_groups(trl.model, eval_enc, tokenizer.pad_token_id, 16384)
        tokens = sum(len(r["chosen_ids"]) + len(r["rejected_ids"]) for r in rows)
        padding, steps = None, trl.state.global_step
    return {
        "trainer": trainer,
        "tokens_per_epoch": tokens,
        "seconds_per_epoch": seconds,
        "cpu_seconds_per_epoch": cpu_seconds,
        "tokens_per_second": tokens / seconds,
        "pairs_per_second": train_pairs / seconds,
        "padding_fraction": padding,
        "steps": steps,
        "peak_rss_mb": _peak_rss_mb(),
        "pairwise_accuracy": metrics["pairwise_accuracy"],
        "kendall_tau": metrics["kendall_tau"],
        "train_groups": len(train_groups),
        "train_pairs": train_pairs,
        "eval_pairs": metrics["pairs"],
    }


def decoder_comparison(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    """Every decoder trainer in its own child process, `--repeats` times in rotating order; medians."""
    from training.reward_model.packing import encode_packed_group

    train_groups, _ = _decoder_data(args)
    _, tokenizer = _decoder_model(args)
    packed = [encode_packed_group(g, tokenizer, args.decoder_max_length) for g in train_groups]
    prompt = statistics.fmean(len(p.prompt) for p in packed)
    answer = statistics.fmean(len(s) for p in packed for s in p.suffixes)
    runs = []
    for rep in range(args.repeats):
        order = DECODER_TRAINERS[rep % 3 :] + DECODER_TRAINERS[: rep % 3]
        for trainer in order:
            r = _spawn([*argv, "--decoder-child", trainer], "ours", 4)  # `--child`: any, run_decoder reads
            r["repeat"] = rep
            runs.append(r)
            print(f"# decoder {trainer} repeat {rep}: {json.dumps(r)}", file=sys.stderr, flush=True)
    med = {
        trainer: {
            key: statistics.median(r[key] for r in runs if r["trainer"] == trainer)
            for key in runs[0]
            if key not in ("trainer", "repeat") and runs[0][key] is not None
        }
        for trainer in DECODER_TRAINERS
    }
    for trainer in DECODER_TRAINERS:
        pad = [r["padding_fraction"] for r in runs if r["trainer"] == trainer]
        med[trainer]["padding_fraction"] = statistics.median(pad) if None not in pad else None
    return {
        "setting": "decoder",
        "k": 4,
        "model_parameters": sum(p.numel() for p in _decoder_model(args)[0].parameters()),
        "mean_prompt_tokens": round(prompt, 1),
        "mean_answer_tokens": round(answer, 1),
        "prompt_to_answer": round(prompt / answer, 2),
        "runs": runs,
        **{trainer: med[trainer] for trainer in DECODER_TRAINERS},
        "speedup_vs_trl": med["trl"]["cpu_seconds_per_epoch"] / med["shared"]["cpu_seconds_per_epoch"],
        "speedup_vs_unshared": med["unshared"]["cpu_seconds_per_epoch"]
        / med["shared"]["cpu_seconds_per_epoch"],
    }


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _grad_norm_summary(norms: list[float], max_grad_norm: float) -> dict[str, Any]:
    """Pre-clipping gradient norms of every optimizer step, their mean and the share that clipping cut."""
    norms = [float(n) for n in norms]
    return {
        "grad_norm_mean": statistics.fmean(norms) if norms else None,
        "clipped_step_fraction": (
            sum(n > max_grad_norm for n in norms) / len(norms) if norms and max_grad_norm else None
        ),
        "grad_norms": [round(n, 4) for n in norms],
    }


def _one_group_per_pair(groups: list) -> list:
    """Every preference pair as its own two-answer group: our engine then forwards pairs like TRL."""
    from training.reward_model import Group

    return [
        Group(f"{g.id}/{n}", g.conversation, [g.answers[b], g.answers[w]], [(0, 1)], [[0], [1]])
        for g in groups
        for n, (b, w) in enumerate(g.pairs)
    ]


def _our_config(args: argparse.Namespace, pairs_per_group: int) -> Any:
    """Our engine's `TrainConfig` for a run whose groups each hold `pairs_per_group` pairs."""
    from training.reward_model import TrainConfig

    return TrainConfig(
        base_model=args.base_model,
        output_dir=None,
        epochs=args.epochs,
        lr=args.lr,
        max_length=args.max_length,
        # The budget is set out of reach so that, like TRL, a step holds a fixed number of pairs.
        batch_tokens=10**9,
        max_groups_per_batch=max(1, args.pairs_per_step // pairs_per_group),
        seed=args.seed,
        bf16=False,
        max_grad_norm=args.max_grad_norm or None,
        loss=args.loss,
        log_every=1,  # every step's gradient norm, as TRL logs it below
        show_progress_bar=False,
    )


def _our_batches_as_pairs(
    args: argparse.Namespace, k: int, groups: list, tokenizer: Any
) -> list[list[tuple[int, int, int]]]:
    """Our engine's optimizer steps, epoch after epoch, each as its (group, better, worse) pairs.

    The plan `train` itself makes for whole K-answer groups (a group's answers are all in pairs here).
    """
    from training.reward_model.batching import encode_group
    from training.reward_model.trainer import epoch_plan

    enc = [encode_group(g, tokenizer, args.max_length) for g in groups]
    config = _our_config(args, k * (k - 1) // 2)
    steps = []
    for epoch in range(args.epochs):
        plan = epoch_plan(enc, config, epoch)
        steps += [[(i, b, w) for i in batch for b, w in groups[i].pairs] for batch in plan]
    return steps


def run_ours(args: argparse.Namespace, k: int) -> dict[str, Any]:
    """Train with our engine on K-wise groups; pairs per step fixed via groups per batch."""
    from training.reward_model import train

    train_groups, eval_groups = _data(args, k)
    pairs_per_group = k * (k - 1) // 2
    if args.composition == "pairs":
        train_groups, pairs_per_group = _one_group_per_pair(train_groups), 1
    config = _our_config(args, pairs_per_group)
    events: list[dict[str, Any]] = []
    result = train(config, train_groups, eval_groups, on_event=events.append)
    answers = sum(len(g.answers) for g in train_groups) * args.epochs
    pairs = sum(len(g.pairs) for g in train_groups) * args.epochs
    return {
        "trainer": "ours",
        "k": k,
        "seconds_per_epoch": result["train_seconds"] / args.epochs,
        "cpu_seconds_per_epoch": result["train_cpu_seconds"] / args.epochs,
        "forwards_per_second": answers / result["train_seconds"],
        "pairs_per_second": pairs / result["train_seconds"],
        "tokens_per_second": result["tokens_per_second"],
        "padding_fraction": result["padding_fraction"],
        "steps": result["steps"],
        "peak_rss_mb": _peak_rss_mb(),
        "pairwise_accuracy": result["eval"]["pairwise_accuracy"],
        "kendall_tau": result["eval"]["kendall_tau"],
        "train_pairs": sum(len(g.pairs) for g in train_groups),
        "eval_pairs": result["eval"]["pairs"],
        **_grad_norm_summary(
            [e["grad_norm"] for e in events if e["event"] == "progress"], args.max_grad_norm
        ),
    }


def run_trl(args: argparse.Namespace, k: int) -> dict[str, Any]:
    """Train TRL's RewardTrainer on every ordered pair of the same groups, tokenized identically."""
    import datasets
    import torch
    from trl import RewardConfig, RewardTrainer

    from training.reward_model.batching import encode_group
    from training.reward_model.modeling import load_base
    from training.reward_model.trainer import evaluate_groups

    train_groups, eval_groups = _data(args, k)
    torch.manual_seed(args.seed)
    model, tokenizer = load_base(args.base_model)
    encoded = [encode_group(g, tokenizer, args.max_length) for g in train_groups]
    if args.composition == "groups":
        # Our batches, in our order, every epoch's in turn: one pass over them, not shuffled.
        steps = _our_batches_as_pairs(args, k, train_groups, tokenizer)
        order = [pair for step in steps for pair in step]
    else:
        order = [(i, b, w) for i, g in enumerate(train_groups) for b, w in g.pairs]
    rows = [
        {"chosen_ids": encoded[i].input_ids[b], "rejected_ids": encoded[i].input_ids[w]} for i, b, w in order
    ]
    dataset = datasets.Dataset.from_list(rows)
    epochs = args.epochs
    trainer_class = RewardTrainer
    if args.composition == "groups":
        epochs = 1

        ends = list(itertools.accumulate(len(step) for step in steps))
        batches = [list(range(end - len(step), end)) for step, end in zip(steps, ends, strict=True)]

        class InOrderRewardTrainer(RewardTrainer):
            def get_train_dataloader(self) -> Any:
                loader = torch.utils.data.DataLoader(
                    self.train_dataset, batch_sampler=batches, collate_fn=self.data_collator
                )
                return self.accelerator.prepare(loader)

        trainer_class = InOrderRewardTrainer
    config = RewardConfig(
        output_dir=str(Path(args.workdir) / f"trl-k{k}"),
        per_device_train_batch_size=args.pairs_per_step,
        num_train_epochs=epochs,
        learning_rate=args.lr,
        lr_scheduler_type="linear",
        warmup_steps=0,
        weight_decay=0.0,
        # An infinite bound clips nothing but still makes the Trainer log the norm.
        max_grad_norm=args.max_grad_norm or float("inf"),
        max_length=args.max_length,
        bf16=False,
        gradient_checkpointing=False,
        disable_dropout=True,
        seed=args.seed,
        logging_steps=1,  # every step's gradient norm
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        disable_tqdm=True,
    )
    trainer = trainer_class(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)
    n_tokens = sum(len(r["chosen_ids"]) + len(r["rejected_ids"]) for r in rows) * epochs
    start, cpu_start = time.perf_counter(), time.process_time()
    trainer.train()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    eval_enc = [encode_group(g, tokenizer, args.max_length) for g in eval_groups]
    trained = trainer.model
    metrics = evaluate_groups(trained, eval_enc, tokenizer.pad_token_id, 16384)
    return {
        "trainer": "trl",
        "k": k,
        "seconds_per_epoch": seconds / args.epochs,
        "cpu_seconds_per_epoch": cpu_seconds / args.epochs,
        "forwards_per_second": 2 * len(rows) * epochs / seconds,
        "pairs_per_second": len(rows) * epochs / seconds,
        "tokens_per_second": n_tokens / seconds,
        "padding_fraction": None,
        "steps": trainer.state.global_step,
        "peak_rss_mb": _peak_rss_mb(),
        "pairwise_accuracy": metrics["pairwise_accuracy"],
        "kendall_tau": metrics["kendall_tau"],
        "train_pairs": sum(len(g.pairs) for g in train_groups),
        "eval_pairs": metrics["pairs"],
        **_grad_norm_summary(
            [h["grad_norm"] for h in trainer.state.log_history if "grad_norm" in h], args.max_grad_norm
        ),
    }


def gradient_noise(args: argparse.Namespace, k: int) -> dict[str, Any]:
    """How well one optimizer step's gradient estimates the whole epoch's, at the initial model.

    Our steps (whole groups, the engine's own batch plan) against TRL-style steps (the same number of
    shuffled pairs), both against the full-data gradient G (mean over every training pair): mean squared
    deviation from G, cosine to G, and an Adam proxy, G . (G / sqrt(v)) with v the mean squared step
    gradient per parameter (first-order loss decrease per unit learning rate of an Adam-normalised step).
    """
    import random

    import torch
    import torch.nn.functional as F

    from training.reward_model.batching import collate, encode_group
    from training.reward_model.loss import batch_loss_sum
    from training.reward_model.modeling import disable_dropout, load_base
    from training.reward_model.trainer import epoch_plan

    train_groups, _ = _data(args, k)
    torch.manual_seed(args.seed)  # the same initial model as both trainers
    model, tokenizer = load_base(args.base_model)
    disable_dropout(model)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    enc = [encode_group(g, tokenizer, args.max_length) for g in train_groups]

    def step_gradient(seqs: list[list[int]], types: list[list[int]] | None, loss_fn: Any) -> torch.Tensor:
        model.zero_grad(set_to_none=True)
        length = max(map(len, seqs))
        ids = torch.full((len(seqs), length), tokenizer.pad_token_id)
        mask, token_types = torch.zeros_like(ids), torch.zeros_like(ids)
        for row, seq in enumerate(seqs):
            ids[row, : len(seq)], mask[row, : len(seq)] = torch.tensor(seq), 1
            if types is not None:
                token_types[row, : len(seq)] = torch.tensor(types[row])
        inputs = {"input_ids": ids, "attention_mask": mask}
        if types is not None:
            inputs["token_type_ids"] = token_types
        loss_fn(model(**inputs).logits[:, 0]).backward()
        return torch.cat([p.grad.reshape(-1) for p in params])

    def ours(batch: list[int]) -> torch.Tensor:
        b = collate([enc[i] for i in batch], tokenizer.pad_token_id)
        seqs = [ids for i in batch for ids in enc[i].input_ids]
        types = [t for i in batch for t in enc[i].token_type_ids] if "token_type_ids" in b else None

        def loss(rewards: torch.Tensor) -> torch.Tensor:
            total, count = batch_loss_sum(rewards, b["better"], b["worse"], b["pair_group"], b["rankings"])
            return total / count

        return step_gradient(seqs, types, loss)

    def trl(pairs: list[tuple[int, int, int]]) -> torch.Tensor:
        seqs = [enc[i].input_ids[c] for i, c, _ in pairs] + [enc[i].input_ids[r] for i, _, r in pairs]
        types = None
        if enc[0].token_type_ids is not None:
            types = [enc[i].token_type_ids[c] for i, c, _ in pairs] + [
                enc[i].token_type_ids[r] for i, _, r in pairs
            ]

        def loss(rewards: torch.Tensor) -> torch.Tensor:
            chosen, rejected = rewards.chunk(2)
            return -F.logsigmoid(chosen - rejected).mean()

        return step_gradient(seqs, types, loss)

    our_steps = epoch_plan(enc, _our_config(args, k * (k - 1) // 2), 0)  # the first epoch's steps
    n_pairs = sum(len(g.pairs) for g in enc)
    full = sum(ours(b) * sum(len(enc[i].pairs) for i in b) for b in our_steps) / n_pairs
    pairs = [(i, b, w) for i, g in enumerate(enc) for b, w in g.pairs]
    random.Random(args.seed).shuffle(pairs)
    trl_steps = [pairs[i : i + args.pairs_per_step] for i in range(0, len(pairs), args.pairs_per_step)]

    def summary(gradients: Any) -> dict[str, Any]:
        norms, deviations, cosines = [], [], []
        squares = torch.zeros_like(full)
        for g in gradients:
            norms.append(float(g.norm()))
            deviations.append(float((g - full).norm() ** 2))
            cosines.append(float(g @ full / (g.norm() * full.norm())))
            squares += g * g
        v = squares / len(norms)
        return {
            "steps": len(norms),
            "grad_norm_mean": statistics.fmean(norms),
            "mean_squared_deviation_from_full": statistics.fmean(deviations),
            "mean_cosine_to_full": statistics.fmean(cosines),
            "adam_descent_rate": float((full * full / (v.sqrt() + 1e-8)).sum()),
        }

    return {
        "k": k,
        "seed": args.seed,
        "train_pairs": n_pairs,
        "full_grad_norm": float(full.norm()),
        "ours": summary(ours(b) for b in our_steps),
        "trl": summary(trl(p) for p in trl_steps),
    }


def _setting(value: str) -> int | str:
    return value if value == "decoder" else int(value)


def build_parser() -> argparse.ArgumentParser:
    """Benchmark options; `--child` is internal (one trainer, one setting, JSON on stdout)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--base-model", default=None, help="default: packaged all-MiniLM-L6-v2")
    p.add_argument("--items", type=int, default=400, help="synthetic items per setting")
    p.add_argument("--k2-items", type=int, default=1200, help="items for K=2 (pairs are scarcer per item)")
    p.add_argument(
        "--settings",
        type=_setting,
        nargs="+",
        default=[4, 2],
        help="answers per item (K), or 'decoder': shared prompts on a small decoder (K=4)",
    )
    p.add_argument("--decoder-items", type=int, default=80, help="ranked items of the decoder setting")
    p.add_argument("--prompt-words", type=int, default=60, help="decoder setting: fewest words of a prompt")
    p.add_argument("--answer-words", type=int, default=12, help="decoder setting: fewest words of an answer")
    p.add_argument("--decoder-max-length", type=int, default=512)
    p.add_argument("--decoder-child", choices=DECODER_TRAINERS, default=None, help=argparse.SUPPRESS)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--pairs-per-step", type=int, default=24, help="preference pairs per optimizer step")
    p.add_argument(
        "--loss", choices=["kwise", "plackett-luce"], default="kwise", help="our trainer's loss (TRL: pairs)"
    )
    p.add_argument("--max-grad-norm", type=float, default=1.0, help="gradient-norm clipping bound; 0: none")
    p.add_argument(
        "--composition",
        choices=["native", "pairs", "groups"],
        default="native",
        help="diagnostic: what a step holds. native: each trainer's own (ours whole groups, TRL shuffled "
        "pairs); pairs: both shuffled single pairs; groups: both whole groups (TRL in our batch order)",
    )
    p.add_argument("--eval-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=1, help="alternating runs per trainer; medians reported")
    p.add_argument("--start-with", choices=["ours", "trl"], default="ours", help="which trainer runs first")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--workdir", default="/tmp/rewardlab-bench")
    p.add_argument("--json-out", default=None)
    p.add_argument("--child", choices=["ours", "trl"], default=None, help=argparse.SUPPRESS)
    p.add_argument(
        "--gradient-noise",
        action="store_true",
        help="diagnostic: no training; compare one step's gradient to the epoch's at the initial model "
        "(ours vs TRL-style steps, K = --settings[0]) and print it as JSON",
    )
    p.add_argument("--k", type=int, default=4, help=argparse.SUPPRESS)
    return p


def _child(args: argparse.Namespace) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.decoder_child:
        result = run_decoder(args, args.decoder_child)
    else:
        result = (run_ours if args.child == "ours" else run_trl)(args, args.k)
    print("RESULT " + json.dumps(result), flush=True)


def _spawn(argv: list[str], trainer: str, k: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, *argv, "--child", trainer, "--k", str(k)]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    sys.stderr.write(proc.stderr[-5000:])
    raise RuntimeError(f"{trainer} K={k} failed with exit status {proc.returncode}")


def _decoder_table(out: dict[str, Any]) -> None:
    print(
        f"decoder setting: {out['model_parameters'] / 1e6:.1f}M parameters, K=4, prompts "
        f"{out['mean_prompt_tokens']} tokens, answers {out['mean_answer_tokens']} "
        f"({out['prompt_to_answer']}x)"
    )
    print(
        "| trainer | tokens/epoch | wall s/epoch | CPU s/epoch | tokens/s | peak RSS MB | held-out pair acc |"
    )
    print("|---|---|---|---|---|---|---|")
    for trainer in DECODER_TRAINERS:
        m = out[trainer]
        print(
            f"| {trainer} | {m['tokens_per_epoch']:.0f} | {m['seconds_per_epoch']:.1f} | "
            f"{m['cpu_seconds_per_epoch']:.1f} | {m['tokens_per_second']:.0f} | {m['peak_rss_mb']:.0f} | "
            f"{_fmt(m['pairwise_accuracy'], '.3f')} |"
        )
    print(
        f"speed-up (CPU time) vs TRL {out['speedup_vs_trl']:.2f}x, "
        f"vs unshared {out['speedup_vs_unshared']:.2f}x"
    )


def _fmt(x: Any, spec: str) -> str:
    return "n/a" if x is None else format(x, spec)


def main() -> None:
    """Run both trainers on every setting, alternating, and print a Markdown table plus a JSON line."""
    args = build_parser().parse_args()
    if args.gradient_noise:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        print(json.dumps(gradient_noise(args, args.settings[0])), flush=True)
        return
    if args.child:
        _child(args)
        return
    argv = [a for a in sys.argv[1:] if a not in ("--json-out", args.json_out)]
    if "decoder" in args.settings:
        decoder = decoder_comparison(args, argv)
        _decoder_table(decoder)
        args.settings = [k for k in args.settings if k != "decoder"]
        if not args.settings:
            if args.json_out:
                Path(args.json_out).write_text(
                    json.dumps({"arguments": vars(args), "decoder": decoder}, indent=2)
                )
            print(json.dumps({key: value for key, value in decoder.items() if key != "runs"}))
            return
    runs: list[dict[str, Any]] = []
    for k in args.settings:
        for rep in range(args.repeats):
            # Alternate the order so that machine-load drift does not favour one trainer.
            first = ("ours", "trl") if args.start_with == "ours" else ("trl", "ours")
            order = first if rep % 2 == 0 else first[::-1]
            for trainer in order:
                r = _spawn(argv, trainer, k)
                r["repeat"] = rep
                runs.append(r)
                print(f"# {trainer} K={k} repeat {rep}: {json.dumps(r)}", file=sys.stderr, flush=True)
    summary = []
    for k in args.settings:
        med = {}
        for trainer in ("ours", "trl"):
            rs = [r for r in runs if r["k"] == k and r["trainer"] == trainer]
            med[trainer] = {
                key: statistics.median(r[key] for r in rs) if rs[0][key] is not None else None
                for key in rs[0]
                if key not in ("trainer", "repeat", "grad_norms")
            }
        summary.append(
            {
                "k": k,
                "ours": med["ours"],
                "trl": med["trl"],
                "speedup": med["trl"]["seconds_per_epoch"] / med["ours"]["seconds_per_epoch"],
                "cpu_speedup": med["trl"]["cpu_seconds_per_epoch"] / med["ours"]["cpu_seconds_per_epoch"],
            }
        )
    print(
        "| K | trainer | wall s/epoch | CPU s/epoch | answers fwd/s | pairs/s | peak RSS MB "
        "| held-out pair acc | Kendall tau |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for s in summary:
        for trainer in ("ours", "trl"):
            m = s[trainer]
            print(
                f"| {s['k']} | {trainer} | {m['seconds_per_epoch']:.1f} | {m['cpu_seconds_per_epoch']:.1f} | "
                f"{m['forwards_per_second']:.1f} | {m['pairs_per_second']:.1f} | {m['peak_rss_mb']:.0f} | "
                f"{_fmt(m['pairwise_accuracy'], '.3f')} | {_fmt(m['kendall_tau'], '.3f')} |"
            )
        print(
            f"| {s['k']} | **speed-up vs TRL** | **{s['speedup']:.2f}x** | **{s['cpu_speedup']:.2f}x** "
            "| | | | | |"
        )
    out = {"arguments": vars(args), "summary": summary, "runs": runs, "loadavg_end": os.getloadavg()}
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(out, indent=2))
    print(json.dumps({"summary": summary}))


if __name__ == "__main__":
    main()
