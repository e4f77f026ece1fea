"""GPU throughput of the reward-model engine: a 0.5B-class decoder built from a config, bf16, K-wise groups.

Builds a Qwen2-0.5B-shaped sequence classifier from its config (random weights: throughput does not
depend on them, and nothing is downloaded) and the synthetic byte-level BPE tokenizer, then trains on
synthetic K=4 rankings with long multi-turn prompts (about 5x an answer's length) three ways, one after
the other in this process: our engine with each group's prompt forwarded once (`shared`), our engine
without sharing (`unshared`: each answer with its own copy of the prompt) and TRL's RewardTrainer on every
ordered pair (`trl`). For each it reports steady-state tokens/s, answers/s and pairs/s (after warm-up
steps), peak memory and model FLOPs utilisation:

    MFU = (6 * N_params_non_embedding + 12 * layers * hidden * mean_seq_len) * tokens/s / peak bf16 FLOP/s

counting only real (non-pad) tokens, so padding waste lowers MFU as it should. Tokens are not the same
work in the three layouts (sharing forwards fewer for the same pairs): pairs/s is the comparable rate,
and the last line's `speedup_vs_trl` / `speedup_vs_unshared` are its ratios.

    python benchmarks/gpu_throughput.py                       # on a CUDA machine: all three trainers
    python benchmarks/gpu_throughput.py --trainers shared --attn flash_attention_2   # flash: plain only
    python benchmarks/gpu_throughput.py --preset tiny --allow-cpu --steps 4   # CPU smoke test of the script
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# Dense bf16 tensor-core peaks (FLOP/s) by device-name substring, from the vendors' data sheets.
PEAK_BF16 = {
    "H200": 989e12,
    "H100 SXM": 989e12,
    "H100 80GB HBM3": 989e12,
    "H100 PCIe": 756e12,
    "H100": 989e12,
    "GH200": 989e12,
    "B200": 2250e12,
    "A100": 312e12,
    "L40S": 362e12,
    "L4": 121e12,
    "A10G": 125e12,
    "A10": 125e12,
    "RTX 4090": 165e12,
    "RTX 3090": 71e12,
}

PRESETS: dict[str, dict[str, Any]] = {
    # Qwen2-0.5B's shape: 24 layers, 896 wide, GQA 14/2 heads, 151,936-token vocabulary (~494M parameters).
    "0.5b": dict(
        vocab_size=151936,
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        max_position_embeddings=32768,
        rope_theta=1000000.0,
        tie_word_embeddings=True,
    ),
    "tiny": dict(
        vocab_size=1024,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
    ),
}


def peak_flops(device_name: str) -> float | None:
    """Dense bf16 peak of a GPU by name, or None when unknown (then pass --peak-tflops)."""
    for key, value in PEAK_BF16.items():
        if key in device_name:
            return value
    return None


def build_model_and_tokenizer(preset: str, attn: str | None):
    """A Qwen2-shaped reward model from config plus the synthetic BPE tokenizer with a chat template."""
    import torch
    from transformers import AutoModelForSequenceClassification, Qwen2Config

    from training.reward_model.synthetic import synthetic_tokenizer

    tokenizer = synthetic_tokenizer(2000)
    config = Qwen2Config(**PRESETS[preset], num_labels=1)
    torch.manual_seed(0)
    # fp32 master weights; bf16 comes from autocast in the engine.
    kwargs = {"attn_implementation": attn} if attn else {}
    model = AutoModelForSequenceClassification.from_config(config, dtype=torch.float32, **kwargs)
    return model, tokenizer


def flops_per_token(model: Any, mean_seq_len: float) -> tuple[float, int]:
    """Training FLOPs per real token (forward + backward) and the non-embedding parameter count."""
    cfg = model.config
    n_embed = sum(p.numel() for n, p in model.named_parameters() if "embed_tokens" in n)
    n_params = sum(p.numel() for p in model.parameters()) - n_embed
    attention = 12 * cfg.num_hidden_layers * cfg.hidden_size * mean_seq_len
    return 6 * n_params + attention, n_params


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default="0.5b")
    p.add_argument("--trainers", nargs="+", choices=TRAINERS, default=list(TRAINERS))
    p.add_argument("--items", type=int, default=2000, help="synthetic K-wise items (train set)")
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--prompt-words", type=int, default=240, help="fewest words of a conversation")
    p.add_argument("--answer-words", type=int, default=48, help="fewest words of an answer")
    p.add_argument("--max-length", type=int, default=1024)
    p.add_argument("--batch-tokens", type=int, default=32768, help="padded tokens per micro-batch")
    p.add_argument("--steps", type=int, default=40, help="optimizer steps to run per trainer")
    p.add_argument("--warmup-steps", type=int, default=10, help="steps left out of the throughput figure")
    p.add_argument("--attn", default="sdpa", help="sdpa | flash_attention_2 | eager")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (ours)")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--peak-tflops", type=float, default=None, help="override the device's bf16 peak")
    p.add_argument("--allow-cpu", action="store_true", help="run without CUDA (smoke test; no MFU)")
    p.add_argument("--dry-run", action="store_true", help="build the model, count FLOPs, do not train")
    return p.parse_args(argv)


TRAINERS = ("shared", "unshared", "trl")


def _steady(marks: list[tuple[int, float, int, int]], warmup: int) -> tuple[float, float, float] | None:
    """(tokens/s, answers/s, seconds) between the end of warm-up and the last step, from per-step marks.

    Each mark is (step, seconds since start, tokens seen, answers seen), taken with the device synchronised.
    """
    if len(marks) < 2:
        return None
    first = marks[min(warmup, len(marks) - 1) - 1] if warmup > 0 else (0, 0.0, 0, 0)
    last = marks[-1]
    seconds = last[1] - first[1]
    if seconds <= 0:
        return None
    return (last[2] - first[2]) / seconds, (last[3] - first[3]) / seconds, seconds


def run_ours(args: argparse.Namespace, groups: list, shared: bool, cuda: bool) -> dict[str, Any]:
    """Train with the engine (`shared`: the shared-prompt layout) for `--steps` steps; steady-state rates."""
    from training.reward_model import TrainConfig, train

    model, tokenizer = build_model_and_tokenizer(args.preset, args.attn if cuda else None)
    events: list[dict[str, Any]] = []
    config = TrainConfig(
        base_model=f"config:{args.preset}",
        output_dir=None,
        epochs=1,
        lr=1e-5,
        max_length=args.max_length,
        batch_tokens=args.batch_tokens,
        bf16=cuda,
        gradient_checkpointing=args.gradient_checkpointing,
        torch_compile=args.compile,
        max_steps=args.steps,
        log_every=1,
        show_progress_bar=False,
        shared_prompt=shared,
    )
    result = train(config, groups, [], on_event=events.append, model=model, tokenizer=tokenizer)
    progress = [e for e in events if e["event"] == "progress"]
    marks = [(e["step"], e["elapsed_seconds"], e["tokens_seen"], e["answers_seen"]) for e in progress]
    steady = _steady(marks, args.warmup_steps)
    tokens_per_s, answers_per_s = (
        steady[:2] if steady else (result["tokens_per_second"], result["answers_per_second"])
    )
    return {
        "trainer": "shared" if shared else "unshared",
        "layout": result["layout"],
        "steps": result["steps"],
        "padding_fraction": result["padding_fraction"],
        "steady_tokens_per_second": round(tokens_per_s, 1),
        "steady_answers_per_second": round(answers_per_s, 2),
        "overall_tokens_per_second": result["tokens_per_second"],
        "peak_memory_mb": result["peak_memory_mb"],
        "attn_implementation": getattr(model.config, "_attn_implementation", None),
        "_model": model,
    }


def run_trl(args: argparse.Namespace, groups: list, cuda: bool) -> dict[str, Any]:
    """TRL's RewardTrainer on every ordered pair of the same groups (same tokens), about as many per step."""
    import datasets
    import torch
    from transformers import TrainerCallback
    from trl import RewardConfig, RewardTrainer

    from training.reward_model.batching import encode_group

    model, tokenizer = build_model_and_tokenizer(args.preset, args.attn if cuda else None)
    encoded = [encode_group(g, tokenizer, args.max_length) for g in groups]
    rows = [
        {"chosen_ids": e.input_ids[b], "rejected_ids": e.input_ids[w]} for e in encoded for b, w in e.pairs
    ]
    mean_pair = sum(len(r["chosen_ids"]) + len(r["rejected_ids"]) for r in rows) / len(rows)
    pairs_per_step = max(1, int(args.batch_tokens // mean_pair))
    marks: list[tuple[int, float, int, int]] = []
    start = [0.0]

    class Marks(TrainerCallback):
        def on_train_begin(self, *a: Any, **k: Any) -> None:
            _synchronize(cuda)
            start[0] = time.perf_counter()

        def on_step_end(self, cfg: Any, state: Any, *a: Any, **k: Any) -> None:
            _synchronize(cuda)
            done = rows[: state.global_step * pairs_per_step]
            tokens = sum(len(r["chosen_ids"]) + len(r["rejected_ids"]) for r in done)
            marks.append((state.global_step, time.perf_counter() - start[0], tokens, 2 * len(done)))

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    config = RewardConfig(
        output_dir="/tmp/rewardlab-gpu-trl",
        per_device_train_batch_size=pairs_per_step,
        max_steps=args.steps,
        learning_rate=1e-5,
        max_length=args.max_length,
        bf16=cuda,
        gradient_checkpointing=args.gradient_checkpointing,
        disable_dropout=True,
        logging_steps=10,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=0,
    )
    trainer = RewardTrainer(
        model=model,
        args=config,
        train_dataset=datasets.Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=[Marks()],
    )
    # In order: the marks count each step's pairs from the start of the list.
    trainer._get_train_sampler = lambda *a, **k: torch.utils.data.SequentialSampler(trainer.train_dataset)
    trainer.train()
    steady = _steady(marks, args.warmup_steps)
    tokens_per_s, answers_per_s = steady[:2] if steady else (0.0, 0.0)
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    return {
        "trainer": "trl",
        "layout": "pairs",
        "steps": trainer.state.global_step,
        "pairs_per_step": pairs_per_step,
        "padding_fraction": None,
        "steady_tokens_per_second": round(tokens_per_s, 1),
        "steady_answers_per_second": round(answers_per_s, 2),
        "peak_memory_mb": round(peak, 1) if peak is not None else None,
        "attn_implementation": getattr(model.config, "_attn_implementation", None),
        "_model": model,
    }


def _synchronize(cuda: bool) -> None:
    if cuda:
        import torch

        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark: one JSON line per trainer, then a summary line."""
    import gc

    import torch

    from training.reward_model import groups_from_records
    from training.reward_model.synthetic import long_prompt_records

    args = parse_args(argv)
    cuda = torch.cuda.is_available()
    if not cuda and not (args.allow_cpu or args.dry_run):
        print(json.dumps({"event": "error", "error": "no CUDA device; pass --allow-cpu for a smoke test"}))
        return 2
    device_name = torch.cuda.get_device_name(0) if cuda else "cpu"
    rows = long_prompt_records(
        args.items,
        k=args.k,
        seed=0,
        prompt_words=(args.prompt_words, args.prompt_words * 3 // 2),
        answer_words=(args.answer_words, args.answer_words * 3 // 2),
    )
    groups = groups_from_records(rows)
    model, tokenizer = build_model_and_tokenizer(args.preset, None)
    n_params = sum(p.numel() for p in model.parameters())
    lengths = _shape(groups, tokenizer, args.max_length)
    if args.dry_run:
        per_token, non_embed = flops_per_token(model, lengths["mean_sequence_tokens"])
        print(
            json.dumps(
                {
                    "event": "dry_run",
                    "params": n_params,
                    "non_embedding_params": non_embed,
                    "flops_per_token": per_token,
                    "groups": len(groups),
                    **lengths,
                }
            )
        )
        return 0
    del model
    peak = args.peak_tflops * 1e12 if args.peak_tflops else (peak_flops(device_name) if cuda else None)
    per_token, non_embed = flops_per_token(
        build_model_and_tokenizer(args.preset, None)[0], lengths["mean_sequence_tokens"]
    )
    results = {}
    for trainer in args.trainers:
        wall = time.perf_counter()
        out = (
            run_trl(args, groups, cuda)
            if trainer == "trl"
            else run_ours(args, groups, trainer == "shared", cuda)
        )
        out.pop("_model")
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
        tokens_per_s = out["steady_tokens_per_second"]
        # Each group's pairs per answer forwarded: K-1 per answer of ours (K(K-1)/2 pairs over K answers),
        # one per two sequences of TRL's.
        pairs_per_answer = (args.k - 1) / 2 if trainer != "trl" else 0.5
        out.update(
            event="trainer",
            device=device_name,
            steady_pairs_per_second=round(out["steady_answers_per_second"] * pairs_per_answer, 2),
            model_tflops_per_second=round(per_token * tokens_per_s / 1e12, 3),
            mfu=round(per_token * tokens_per_s / peak, 4) if peak else None,
            wall_seconds=round(time.perf_counter() - wall, 1),
        )
        results[trainer] = out
        print(json.dumps(out), flush=True)
    summary: dict[str, Any] = {
        "event": "result",
        "device": device_name,
        "preset": args.preset,
        "params": n_params,
        "non_embedding_params": non_embed,
        "bf16": cuda,
        "compile": args.compile,
        "gradient_checkpointing": args.gradient_checkpointing,
        "peak_bf16_tflops": peak / 1e12 if peak else None,
        "torch": torch.__version__,
        **lengths,
        "trainers": results,
    }
    rate = {t: r["steady_pairs_per_second"] for t, r in results.items()}
    if "shared" in rate:
        for other in ("trl", "unshared"):
            if other in rate and rate[other]:
                summary[f"speedup_vs_{other}"] = round(rate["shared"] / rate[other], 2)
    print(json.dumps(summary))
    return 0


def _shape(groups: list, tokenizer: Any, max_length: int) -> dict[str, float]:
    """Mean prompt, answer and answer-sequence lengths in tokens, as the shared layout splits them."""
    from training.reward_model.packing import encode_packed_group

    packed = [encode_packed_group(g, tokenizer, max_length) for g in groups[:200]]
    prompt = sum(len(p.prompt) for p in packed) / len(packed)
    answers = [len(s) for p in packed for s in p.suffixes]
    answer = sum(answers) / len(answers)
    return {
        "mean_prompt_tokens": round(prompt, 1),
        "mean_answer_tokens": round(answer, 1),
        "mean_sequence_tokens": round(prompt + answer, 1),
    }


if __name__ == "__main__":
    sys.exit(main())
