"""GPU throughput of the reward-model engine: a 0.5B-class decoder built from a config, bf16, K-wise groups.

Builds a Qwen2-0.5B-shaped sequence classifier from its config (random weights: throughput does not
depend on them, and nothing is downloaded), a word-level tokenizer over the synthetic vocabulary, and
trains with the real engine (`training.reward_model.train`) on synthetic K=4 rankings. Reports steady
state tokens/s (after warm-up steps) and model FLOPs utilisation:

    MFU = (6 * N_params_non_embedding + 12 * layers * hidden * mean_seq_len) * tokens/s / peak bf16 FLOP/s

counting only real (non-pad) tokens, so padding waste lowers MFU as it should.

    python benchmarks/gpu_throughput.py                       # on a CUDA machine
    python benchmarks/gpu_throughput.py --attn flash_attention_2 --compile
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

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
)


def peak_flops(device_name: str) -> float | None:
    """Dense bf16 peak of a GPU by name, or None when unknown (then pass --peak-tflops)."""
    for key, value in PEAK_BF16.items():
        if key in device_name:
            return value
    return None


def build_model_and_tokenizer(preset: str, attn: str | None):
    """A Qwen2-shaped reward model from config plus a word-level tokenizer with a chat template."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import AutoModelForSequenceClassification, PreTrainedTokenizerFast, Qwen2Config

    from training.reward_model.synthetic import BAD, FILLER, GOOD

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    corpus = [" ".join(FILLER), " ".join(GOOD + BAD), "<|im_start|> <|im_end|> user assistant ? ."]
    tok.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=["<unk>", "<|endoftext|>"]))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<|endoftext|>")
    tokenizer.chat_template = CHAT_TEMPLATE
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
    p.add_argument("--items", type=int, default=2000, help="synthetic K-wise items (train set)")
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--min-words", type=int, default=60)
    p.add_argument("--max-words", type=int, default=400)
    p.add_argument("--max-length", type=int, default=1024)
    p.add_argument("--batch-tokens", type=int, default=32768, help="padded tokens per micro-batch")
    p.add_argument("--steps", type=int, default=60, help="optimizer steps to run")
    p.add_argument("--warmup-steps", type=int, default=10, help="steps left out of the throughput figure")
    p.add_argument("--attn", default="sdpa", help="sdpa | flash_attention_2 | eager")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--peak-tflops", type=float, default=None, help="override the device's bf16 peak")
    p.add_argument("--allow-cpu", action="store_true", help="run without CUDA (smoke test; no MFU)")
    p.add_argument("--dry-run", action="store_true", help="build the model, count FLOPs, do not train")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print one JSON line of results."""
    import torch

    from training.reward_model import TrainConfig, groups_from_records, train
    from training.reward_model.synthetic import synthetic_records

    args = parse_args(argv)
    cuda = torch.cuda.is_available()
    if not cuda and not (args.allow_cpu or args.dry_run):
        print(json.dumps({"event": "error", "error": "no CUDA device; pass --allow-cpu for a smoke test"}))
        return 2
    device_name = torch.cuda.get_device_name(0) if cuda else "cpu"
    model, tokenizer = build_model_and_tokenizer(args.preset, args.attn if cuda else None)
    rows = synthetic_records(args.items, k=args.k, seed=0, min_words=args.min_words, max_words=args.max_words)
    groups = groups_from_records(rows)
    n_params = sum(p.numel() for p in model.parameters())
    if args.dry_run:
        per_token, non_embed = flops_per_token(model, args.max_length / 2)
        print(
            json.dumps(
                {
                    "event": "dry_run",
                    "params": n_params,
                    "non_embedding_params": non_embed,
                    "flops_per_token_at_half_max_length": per_token,
                    "groups": len(groups),
                }
            )
        )
        return 0

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
    )
    wall = time.perf_counter()
    result = train(config, groups, [], on_event=events.append, model=model, tokenizer=tokenizer)
    wall = time.perf_counter() - wall
    progress = [e for e in events if e["event"] == "progress"]
    data = next(e for e in events if e["event"] == "data")
    mean_len = data_tokens_per_answer = None
    if progress:
        data_tokens_per_answer = progress[-1]["tokens_seen"] / max(progress[-1]["answers_seen"], 1)
        mean_len = data_tokens_per_answer
    # Steady state: from the end of warm-up to the last step (each logged step synchronises the device).
    warm = progress[min(args.warmup_steps, len(progress) - 1) - 1] if len(progress) > 1 else None
    last = progress[-1] if progress else None
    if warm and last and last["elapsed_seconds"] > warm["elapsed_seconds"]:
        dt = last["elapsed_seconds"] - warm["elapsed_seconds"]
        tokens_per_s = (last["tokens_seen"] - warm["tokens_seen"]) / dt
        answers_per_s = (last["answers_seen"] - warm["answers_seen"]) / dt
    else:
        tokens_per_s, answers_per_s = result["tokens_per_second"], result["answers_per_second"]
    per_token, non_embed = flops_per_token(model, mean_len or args.max_length / 2)
    peak = args.peak_tflops * 1e12 if args.peak_tflops else (peak_flops(device_name) if cuda else None)
    out = {
        "event": "result",
        "device": device_name,
        "preset": args.preset,
        "params": n_params,
        "non_embedding_params": non_embed,
        "attn_implementation": getattr(model.config, "_attn_implementation", None),
        "compile": args.compile,
        "gradient_checkpointing": args.gradient_checkpointing,
        "bf16": result["bf16"],
        "steps": result["steps"],
        "train_groups": data["train_groups"],
        "mean_tokens_per_answer": mean_len,
        "padding_fraction": result["padding_fraction"],
        "steady_tokens_per_second": round(tokens_per_s, 1),
        "steady_answers_per_second": round(answers_per_s, 2),
        "overall_tokens_per_second": result["tokens_per_second"],
        "model_tflops_per_second": round(per_token * tokens_per_s / 1e12, 2),
        "peak_bf16_tflops": peak / 1e12 if peak else None,
        "mfu": round(per_token * tokens_per_s / peak, 4) if peak else None,
        "peak_memory_mb": result["peak_memory_mb"],
        "wall_seconds": round(wall, 1),
        "torch": torch.__version__,
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
