"""The benchmark scripts' CPU-safe paths keep working (the GPU run itself needs a CUDA machine)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_throughput_cpu_smoke_and_peak_table(capsys):
    gpu = _load("gpu_throughput")
    argv = ["--preset", "tiny", "--allow-cpu", "--steps", "3", "--warmup-steps", "1", "--items", "24"]
    argv += ["--prompt-words", "20", "--answer-words", "4", "--max-length", "128", "--batch-tokens", "1024"]
    assert gpu.main(argv) == 0
    lines = [
        json.loads(line) for line in capsys.readouterr().out.strip().splitlines() if line.startswith('{"')
    ]
    result = lines[-1]
    assert result["event"] == "result" and set(result["trainers"]) == {"shared", "unshared", "trl"}
    for trainer in result["trainers"].values():
        assert trainer["steps"] == 3 and trainer["steady_tokens_per_second"] > 0
    assert result["trainers"]["shared"]["layout"] == "shared_prompt"
    assert result["trainers"]["unshared"]["layout"] == "plain"
    assert result["speedup_vs_trl"] > 0 and result["speedup_vs_unshared"] > 0
    assert result["mean_prompt_tokens"] > 4 * result["mean_answer_tokens"]
    assert gpu.peak_flops("NVIDIA H100 PCIe") == 756e12 and gpu.peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert gpu.peak_flops("NVIDIA A100-SXM4-80GB") == 312e12 and gpu.peak_flops("Some GPU") is None


def test_train_vs_trl_parser_defaults():
    args = _load("train_vs_trl").build_parser().parse_args([])
    assert args.settings == [4, 2] and args.pairs_per_step == 24 and args.max_length == 128


def test_train_vs_trl_decoder_setting_has_long_multi_turn_prompts():
    bench = _load("train_vs_trl")
    args = bench.build_parser().parse_args(["--settings", "decoder", "4", "--decoder-items", "20"])
    assert args.settings == ["decoder", 4]
    train_groups, eval_groups = bench._decoder_data(args)
    _, tokenizer = bench._decoder_model(args)
    from training.reward_model.packing import encode_packed_group

    packed = [encode_packed_group(g, tokenizer, args.decoder_max_length) for g in train_groups]
    prompt = sum(len(p.prompt) for p in packed) / len(packed)
    answer = sum(len(s) for p in packed for s in p.suffixes) / sum(len(p.suffixes) for p in packed)
    assert prompt >= 4 * answer and all(len(g.answers) == 4 for g in train_groups + eval_groups)
    assert all(len(g.conversation) == 5 for g in train_groups)  # three user turns, two replies


def test_train_vs_trl_diagnostic_compositions_hold_the_same_pairs(minilm_tokenizer):
    from training.reward_model import groups_from_records
    from training.reward_model.synthetic import synthetic_records

    bench = _load("train_vs_trl")
    args = bench.build_parser().parse_args(["--items", "30", "--seed", "3", "--composition", "groups"])
    assert args.max_grad_norm == 1.0
    groups = groups_from_records(synthetic_records(30, k=4, seed=3))
    all_pairs = sorted((i, b, w) for i, g in enumerate(groups) for b, w in g.pairs)
    steps = bench._our_batches_as_pairs(args, 4, groups, minilm_tokenizer)
    # Every step is whole groups (4 per step, 6 pairs each), and the epoch holds every pair once.
    assert [len(s) for s in steps].count(24) == len(steps) - 1 and sorted(
        p for s in steps for p in s
    ) == all_pairs
    assert all(len({i for i, _, _ in s}) * 6 == len(s) for s in steps)
    singles = bench._one_group_per_pair(groups)
    assert len(singles) == len(all_pairs) and all(
        g.pairs == [(0, 1)] and len(g.answers) == 2 for g in singles
    )


def test_train_vs_trl_gradient_noise_compares_step_gradients_to_the_epochs(tiny_bert_dir):
    bench = _load("train_vs_trl")
    args = bench.build_parser().parse_args(
        ["--base-model", tiny_bert_dir, "--items", "12", "--max-length", "48"]
    )
    out = bench.gradient_noise(args, 4)
    # 24 pairs a step either way: whole groups for ours, shuffled pairs for TRL; same full gradient.
    assert out["ours"]["steps"] == out["trl"]["steps"] == -(-out["train_pairs"] // 24)
    for side in ("ours", "trl"):
        assert (
            -1 <= out[side]["mean_cosine_to_full"] <= 1 and out[side]["mean_squared_deviation_from_full"] >= 0
        )
        assert out[side]["grad_norm_mean"] > 0 and out[side]["adam_descent_rate"] > 0
