"""Training end to end on tiny models: learning, determinism, save/load/pipeline parity, decoders, CLI."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from training.reward_model import (
    RewardScorer,
    TrainConfig,
    groups_from_records,
    pipeline_input,
    read_groups,
    read_metadata,
    score_texts,
    split_groups,
    train,
)
from training.reward_model.synthetic import synthetic_records

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trained_bert(tiny_bert_dir, tmp_path_factory):
    """A tiny BERT trained on synthetic K=4 rankings; returns (result, output_dir, eval_groups)."""
    groups = groups_from_records(synthetic_records(320, k=4, seed=1, min_words=4, max_words=14))
    train_groups, eval_groups = split_groups(groups, 0.2)
    out = tmp_path_factory.mktemp("rm_bert")
    config = TrainConfig(
        base_model=tiny_bert_dir,
        output_dir=str(out),
        epochs=2,
        lr=3e-3,
        max_length=48,
        batch_tokens=2048,
        show_progress_bar=False,
    )
    events = []
    result = train(config, train_groups, eval_groups, on_event=events.append)
    return result, out, eval_groups, events


def test_end_to_end_learns_synthetic_preference_quickly(trained_bert):
    result, out, _, events = trained_bert
    assert result["eval"]["pairwise_accuracy"] > 0.9, result
    assert result["eval"]["best_vs_worst_accuracy"] > 0.9 and result["eval"]["kendall_tau"] > 0.8
    assert result["train_seconds"] < 60
    kinds = [e["event"] for e in events]
    assert kinds[0] == "data" and "progress" in kinds and kinds.count("eval") == 2
    meta = read_metadata(out)
    assert meta["metrics"]["eval"]["pairwise_accuracy"] == result["eval"]["pairwise_accuracy"]
    assert meta["arguments"]["lr"] == 3e-3 and meta["text_format"] == "role_tagged_pair"


def test_saved_model_gives_same_scores_in_pipeline_and_scorer(trained_bert):
    from transformers import pipeline

    _, out, eval_groups, _ = trained_bert
    g = eval_groups[0]
    scorer = RewardScorer(out, device="cpu")
    ours = scorer.score(g.conversation, g.answer_texts)
    assert ours == pytest.approx(score_texts(out, g.conversation, g.answer_texts), abs=1e-6)
    assert scorer.score("a plain question", []) == []
    assert scorer.score_groups([("q", ["x"]), ("q", []), ("r", ["y", "z"])])[1] == []
    pipe = pipeline("text-classification", model=str(out), function_to_apply="none", device="cpu")
    theirs = [_pipe_score(pipe, pipeline_input(scorer.tokenizer, g.conversation, t)) for t in g.answer_texts]
    assert ours == pytest.approx(theirs, abs=1e-4)
    # Scores respect the learned preference on this item.
    best, worst = g.ranking[0][0], g.ranking[-1][0]
    assert ours[best] > ours[worst]


def test_same_seed_gives_identical_models(tiny_bert_dir, tmp_path):
    groups = groups_from_records(synthetic_records(40, k=3, seed=2, min_words=3, max_words=8))
    scores = []
    for run in range(2):
        out = tmp_path / f"run{run}"
        config = TrainConfig(
            base_model=tiny_bert_dir,
            output_dir=str(out),
            epochs=1,
            lr=1e-3,
            max_length=32,
            batch_tokens=512,
            seed=7,
            show_progress_bar=False,
        )
        result = train(config, groups[:30], groups[30:])
        scores.append(
            (result["final_loss"], RewardScorer(out).score(groups[0].conversation, groups[0].answer_texts))
        )
    assert scores[0] == scores[1]


def test_gradient_norm_before_clipping_and_share_of_clipped_steps_are_reported(tiny_bert_dir):
    groups = groups_from_records(synthetic_records(24, k=3, seed=3, min_words=3, max_words=8))
    runs = {}
    for bound in (1e-6, None):  # every step clipped; no clipping at all
        config = TrainConfig(
            base_model=tiny_bert_dir,
            epochs=1,
            lr=1e-3,
            max_length=32,
            batch_tokens=256,
            max_grad_norm=bound,
            log_every=1,
            seed=5,
            show_progress_bar=False,
        )
        events = []
        result = train(config, groups, on_event=events.append)
        norms = [e["grad_norm"] for e in events if e["event"] == "progress"]
        runs[bound] = (result, norms)
        assert len(norms) == result["steps"] > 1 and all(n > 0 for n in norms)
        assert result["grad_norm_mean"] == pytest.approx(sum(norms) / len(norms), rel=1e-4)
        assert result["grad_norm_max"] == pytest.approx(max(norms), rel=1e-4)
    assert runs[1e-6][0]["clipped_step_fraction"] == 1.0
    assert runs[None][0]["clipped_step_fraction"] is None
    # The norm is read before clipping: the first step (same model, same batch) reads the same either way.
    assert runs[1e-6][1][0] == pytest.approx(runs[None][1][0], rel=1e-5)


def test_without_clipping_the_reported_norm_is_the_gradients_own_and_no_gradient_is_rescaled(
    tiny_bert_dir, monkeypatch
):
    import torch.nn.utils.clip_grad as clip_grad

    from training.reward_model.batching import collate, encode_group
    from training.reward_model.loss import batch_loss_sum
    from training.reward_model.modeling import disable_dropout, load_base
    from training.reward_model.trainer import epoch_plan, only_paired_answers

    rescaled = []
    rescale = clip_grad._clip_grads_with_norm_  # what torch.nn.utils.clip_grad_norm_ calls to rescale
    monkeypatch.setattr(
        clip_grad, "_clip_grads_with_norm_", lambda *a, **k: rescaled.append(1) or rescale(*a, **k)
    )
    groups = groups_from_records(synthetic_records(12, k=3, seed=3, min_words=3, max_words=8))
    config = TrainConfig(
        base_model=tiny_bert_dir,
        lr=1e-3,
        max_length=32,
        batch_tokens=256,
        max_grad_norm=None,
        max_steps=1,
        log_every=1,
        show_progress_bar=False,
    )
    events = []
    train(config, groups, on_event=events.append)
    reported = next(e["grad_norm"] for e in events if e["event"] == "progress")
    assert rescaled == []

    # By hand: the same model and first batch, one backward of the step's mean loss.
    model, tokenizer = load_base(tiny_bert_dir)
    disable_dropout(model)
    encoded = [encode_group(only_paired_answers(g), tokenizer, config.max_length) for g in groups]
    batch = collate([encoded[i] for i in epoch_plan(encoded, config, 0)[0]], tokenizer.pad_token_id)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
    rewards = model(**inputs).logits[:, 0]
    total, count = batch_loss_sum(
        rewards, batch["better"], batch["worse"], batch["pair_group"], batch["rankings"], config.loss
    )
    (total / count).backward()
    by_hand = sum(float(p.grad.double().pow(2).sum()) for p in model.parameters() if p.grad is not None)
    assert reported == pytest.approx(by_hand**0.5, rel=1e-5)

    # With a bound the gradients go through clipping.
    train(dataclasses.replace(config, max_grad_norm=1.0), groups)
    assert rescaled


def test_plackett_luce_trains_on_items_without_a_single_ranking(tiny_bert_dir):
    rows = synthetic_records(24, k=3, seed=8, min_words=3, max_words=8)
    # A second annotator on every other item: its pairs all train, but no one ranking describes it.
    rows += [
        {**row, "ranking": [row["ranking"][1], row["ranking"][0], *row["ranking"][2:]]} for row in rows[::2]
    ]
    groups = groups_from_records(rows)
    assert sum(g.ranking is None for g in groups) == 12
    config = TrainConfig(
        base_model=tiny_bert_dir,
        lr=1e-3,
        max_length=32,
        batch_tokens=256,
        grad_accum=2,
        loss="plackett-luce",
        show_progress_bar=False,
    )
    result = train(config, groups)
    assert result["steps"] > 0 and torch.isfinite(torch.tensor(result["final_loss"]))


def test_decoder_with_chat_template_plackett_luce_and_accumulation(tiny_llama_dir, tmp_path):
    from transformers import AutoTokenizer, pipeline

    rows = synthetic_records(60, k=3, seed=4, min_words=3, max_words=8)
    rows[0]["ranking"] = [[rows[0]["ranking"][0], rows[0]["ranking"][1]], rows[0]["ranking"][2]]  # a tie
    groups = groups_from_records(rows)
    assert AutoTokenizer.from_pretrained(tiny_llama_dir).pad_token is None
    config = TrainConfig(
        base_model=tiny_llama_dir,
        output_dir=str(tmp_path),
        epochs=1,
        lr=1e-3,
        max_length=40,
        batch_tokens=256,
        grad_accum=2,
        loss="plackett-luce",
        center_rewards_coefficient=0.01,
        gradient_checkpointing=True,
        show_progress_bar=False,
    )
    result = train(config, groups[:50], groups[50:])
    assert (
        result["steps"] > 0
        and result["eval"]["pairs"] > 0
        and torch.isfinite(torch.tensor(result["final_loss"]))
    )
    scorer = RewardScorer(tmp_path, device="cpu")
    assert (
        scorer.tokenizer.pad_token is not None
        and scorer.model.config.pad_token_id == scorer.tokenizer.pad_token_id
    )
    assert read_metadata(tmp_path)["text_format"] == "chat_template"
    g = groups[51]
    ours = scorer.score(g.conversation, g.answer_texts)
    pipe = pipeline("text-classification", model=str(tmp_path), function_to_apply="none", device="cpu")
    theirs = [_pipe_score(pipe, pipeline_input(scorer.tokenizer, g.conversation, t)) for t in g.answer_texts]
    assert ours == pytest.approx(theirs, abs=1e-4)


def _pipe_score(pipe, inputs) -> float:
    out = pipe(inputs)
    return (out[0] if isinstance(out, list) else out)["score"]


def _lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_cli_train_evaluate_score_protocol(tiny_bert_dir, tmp_path, capsys):
    from training.reward_model.cli import main

    data = tmp_path / "data.jsonl"
    rows = synthetic_records(40, k=3, seed=6, min_words=3, max_words=8)
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "model"
    code = main(
        [
            "train",
            "--data",
            str(data),
            "--output",
            str(out),
            "--base-model",
            tiny_bert_dir,
            "--max-length",
            "32",
            "--batch-tokens",
            "512",
            "--lr",
            "1e-3",
            "--log-every",
            "1",
            "--eval-fraction",
            "0.25",
            "--no-progress-bar",
        ]
    )
    events = _lines(capsys.readouterr().out)
    assert code == 0
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "result" and "progress" in kinds and "eval" in kinds
    progress = next(e for e in events if e["event"] == "progress")
    assert {"step", "total_steps", "epoch", "loss"} <= set(progress)
    # Every field the protocol in cli.py documents for a progress event, with a measured gradient norm.
    documented = "event step total_steps epoch loss grad_norm lr elapsed_seconds answers_seen tokens_seen"
    assert set(progress) == set(documented.split())
    assert progress["grad_norm"] > 0
    result = events[-1]
    for key in ("train_seconds", "answers_per_second", "tokens_per_second", "peak_memory_mb", "eval"):
        assert key in result
    for key in ("grad_norm_mean", "grad_norm_max", "clipped_step_fraction"):
        assert result[key] is not None
    assert read_metadata(out)["data_sha256"]

    assert main(["evaluate", "--model", str(out), "--data", str(data)]) == 0
    metrics = _lines(capsys.readouterr().out)[-1]
    assert metrics["pairs"] == 40 * 3 and 0 <= metrics["pairwise_accuracy"] <= 1

    assert main(["score", "--model", str(out), "--data", str(data)]) == 0
    scored = _lines(capsys.readouterr().out)
    assert len([e for e in scored if e["event"] == "score"]) == 40 * 3 and scored[-1]["answers"] == 120
    # evaluate's accuracy is the share of pairs whose scored rewards are in the preferred order.
    rewards: dict[str, list[float]] = {}
    for e in scored[:-1]:
        rewards.setdefault(e["group_id"], []).append(e["reward"])
    pairs = [(rewards[g.id], b, w) for g in groups_from_records(rows) for b, w in g.pairs]
    in_order = sum(r[b] > r[w] for r, b, w in pairs)
    assert len(pairs) == 120 and metrics["pairwise_accuracy"] == pytest.approx(in_order / 120)

    unranked = tmp_path / "unranked.jsonl"
    unranked.write_text(
        json.dumps({"id": "u1", "prompt": "q", "answers": ["correct clear", "wrong rude"]}) + "\n"
    )
    assert main(["score", "--model", str(out), "--data", str(unranked)]) == 0
    scored = [e for e in _lines(capsys.readouterr().out) if e["event"] == "score"]
    assert [(e["group_id"], e["answer_index"]) for e in scored] == [("u1", 0), ("u1", 1)]

    assert main(["train", "--data", str(tmp_path / "missing.jsonl"), "--output", str(out)]) == 1
    assert _lines(capsys.readouterr().out)[-1]["event"] == "error"


def test_score_emits_an_answer_of_several_pairs_once_with_the_groups_train_reads(
    tiny_bert_dir, tmp_path, capsys
):
    from training.reward_model.cli import main

    data = tmp_path / "pairs.jsonl"
    rows = [
        {"prompt": "q", "chosen": "correct clear", "rejected": "wrong rude"},
        {"prompt": "q", "chosen": "correct clear", "rejected": "wrong"},  # the same answer in a second pair
        {"prompt": "other", "chosen": "clear", "rejected": "rude"},
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["score", "--model", tiny_bert_dir, "--data", str(data)]) == 0
    events = _lines(capsys.readouterr().out)
    scored = [(e["group_id"], e["answer_id"], e["answer_index"]) for e in events if e["event"] == "score"]
    groups = read_groups(data)
    assert scored == [(g.id, a["id"], k) for g in groups for k, a in enumerate(g.answers)]
    assert len(scored) == len(set(scored)) == 5
    assert events[-1] == {"event": "result", "answers": 5, "groups": 2}


def test_engine_imports_without_django():
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    code = "import training.reward_model, sys; assert 'django' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True, timeout=120)
