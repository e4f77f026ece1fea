"""Training decoders on the shared-prompt layout, LoRA adapters, warm starts and pair margins."""

from __future__ import annotations

import json

import pytest
import torch

from training.reward_model import (
    RewardScorer,
    TrainConfig,
    groups_from_records,
    read_groups,
    read_metadata,
    split_groups,
    train,
)
from training.reward_model.loss import batch_loss_sum
from training.reward_model.synthetic import long_prompt_records


def _config(base: str, out=None, **changes) -> TrainConfig:
    settings = dict(
        base_model=base,
        output_dir=str(out) if out else None,
        epochs=2,
        lr=3e-3,
        max_length=256,
        batch_tokens=2048,
        show_progress_bar=False,
    )
    return TrainConfig(**{**settings, **changes})


@pytest.fixture(scope="module")
def long_groups():
    groups = groups_from_records(
        long_prompt_records(240, k=4, seed=5, prompt_words=(40, 70), answer_words=(8, 14))
    )
    return split_groups(groups, 0.2)


def test_the_shared_layout_learns_a_synthetic_preference(tiny_qwen2_dir, long_groups, tmp_path):
    train_groups, eval_groups = long_groups
    events = []
    result = train(_config(tiny_qwen2_dir, tmp_path), train_groups, eval_groups, on_event=events.append)
    data = next(e for e in events if e["event"] == "data")
    assert data["layout"] == result["layout"] == "shared_prompt"
    assert result["eval"]["pairwise_accuracy"] > 0.9, result
    assert result["padding_fraction"] < 0.1
    # Each group's prompt is counted once: far fewer tokens than its answers' full sequences.
    plain_tokens = train(
        _config(tiny_qwen2_dir, shared_prompt=False, max_steps=1), train_groups[:4], on_event=events.append
    )
    assert plain_tokens["layout"] == "plain"
    plain_data = [e for e in events if e["event"] == "data"][-1]
    shared_data = train(_config(tiny_qwen2_dir, max_steps=1), train_groups[:4], on_event=events.append)
    assert shared_data["layout"] == "shared_prompt"
    assert [e for e in events if e["event"] == "data"][-1]["train_tokens"] * 2 < plain_data["train_tokens"]
    # The saved model scores through the same layout, with the metrics the run reported.
    scorer = RewardScorer(tmp_path, device="cpu")
    g = eval_groups[0]
    rewards = scorer.score(g.conversation, g.answer_texts)
    assert rewards[g.ranking[0][0]] > rewards[g.ranking[-1][0]]
    assert read_metadata(tmp_path)["metrics"]["layout"] == "shared_prompt"


def test_shared_and_plain_layouts_take_the_same_first_step(tiny_qwen2_dir, long_groups):
    train_groups, _ = long_groups
    norms = []
    for shared in (True, False):
        events = []
        # One batch of the same four groups, nothing cut: the same loss and gradient either way.
        config = _config(
            tiny_qwen2_dir,
            shared_prompt=shared,
            max_steps=1,
            log_every=1,
            max_length=1024,
            batch_tokens=10**6,
        )
        train(config, train_groups[:4], on_event=events.append)
        norms.append(next(e for e in events if e["event"] == "progress"))
    assert norms[0]["loss"] == pytest.approx(norms[1]["loss"], rel=1e-5)
    assert norms[0]["grad_norm"] == pytest.approx(norms[1]["grad_norm"], rel=1e-4)


def test_forcing_the_shared_layout_on_an_encoder_is_refused(tiny_bert_dir, long_groups):
    with pytest.raises(ValueError, match="shared_prompt needs a decoder"):
        train(_config(tiny_bert_dir, shared_prompt=True, max_steps=1), long_groups[0][:4])


def test_lora_adapters_save_load_and_score_the_same(tiny_qwen2_dir, long_groups, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    train_groups, eval_groups = long_groups
    config = _config(tiny_qwen2_dir, tmp_path, epochs=1, lora_r=4, lora_target_modules=["q_proj", "v_proj"])
    result = train(config, train_groups[:60], eval_groups)
    assert result["layout"] == "shared_prompt"
    meta = read_metadata(tmp_path)
    assert meta["arguments"]["lora_r"] == 4 and (tmp_path / "adapter" / "adapter_config.json").exists()
    g = eval_groups[0]
    merged = RewardScorer(tmp_path, device="cpu").score(g.conversation, g.answer_texts)
    # The saved metrics were computed by the trained (unmerged) model: the merged copy agrees.
    assert RewardScorer(tmp_path, device="cpu").score_groups([(g.conversation, g.answer_texts)])[0] == merged
    # The adapter alone, on the base model, scores the same as the merged directory.
    base = AutoModelForSequenceClassification.from_pretrained(tiny_qwen2_dir, num_labels=1)
    base.config.pad_token_id = 0
    adapted = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    scorer = RewardScorer(tmp_path, device="cpu")
    scorer.model = adapted
    assert scorer.score(g.conversation, g.answer_texts) == pytest.approx(merged, abs=1e-5)
    # Only the adapters and the head trained: the embeddings are the base model's.
    trained = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    original = AutoModelForSequenceClassification.from_pretrained(tiny_qwen2_dir)
    assert torch.equal(trained.model.embed_tokens.weight, original.model.embed_tokens.weight)
    assert not torch.equal(trained.score.weight, original.score.weight)
    assert not torch.equal(
        trained.model.layers[0].self_attn.q_proj.weight, original.model.layers[0].self_attn.q_proj.weight
    )


def test_a_warm_start_continues_from_the_previous_weights(tiny_qwen2_dir, long_groups, tmp_path):
    train_groups, eval_groups = long_groups
    first = tmp_path / "first"
    train(_config(tiny_qwen2_dir, first, epochs=1), train_groups, eval_groups)
    g = eval_groups[0]
    before = RewardScorer(first, device="cpu").score(g.conversation, g.answer_texts)
    # No steps at all: the warm-started model is the previous one, head included.
    same = tmp_path / "same"
    train(_config(None, same, init_from=str(first), lr=1e-12, max_steps=1), train_groups[:4])
    assert RewardScorer(same, device="cpu").score(g.conversation, g.answer_texts) == pytest.approx(
        before, abs=1e-4
    )
    meta = read_metadata(same)
    assert meta["init_from"] == str(first) and meta["base_model"] == tiny_qwen2_dir
    # A fresh start from the base model is far from it.
    fresh = tmp_path / "fresh"
    train(_config(tiny_qwen2_dir, fresh, lr=1e-12, max_steps=1), train_groups[:4])
    assert RewardScorer(fresh, device="cpu").score(g.conversation, g.answer_texts) != pytest.approx(
        before, abs=1e-3
    )


def test_pair_margins_are_read_from_pairs_rows_and_enter_the_loss(tmp_path):
    path = tmp_path / "pairs.jsonl"
    rows = [
        {"prompt": "q", "chosen": "good", "rejected": "bad", "margin": 2.0},
        {"prompt": "q", "chosen": "good", "rejected": "worse"},
        {"prompt": "r", "chosen": "a", "rejected": "b", "rank_gap": 3},  # our export's gap is no margin
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    q, r = read_groups(path)
    assert q.margins == [2.0, 0.0] and r.margins is None
    rewards = torch.tensor([1.0, 0.5, -1.0])
    better, worse = torch.tensor([0, 0]), torch.tensor([1, 2])
    total, count = batch_loss_sum(
        rewards, better, worse, torch.tensor([0, 0]), [None], margins=torch.tensor([2.0, 0.0])
    )
    expected = -torch.nn.functional.logsigmoid(torch.tensor(0.5 - 2.0)) - torch.nn.functional.logsigmoid(
        torch.tensor(2.0)
    )
    assert count == 2 and float(total) == pytest.approx(float(expected))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "q", "chosen": "a", "rejected": "b", "margin": "big"}) + "\n")
    with pytest.raises(Exception, match="margin must be a finite number"):
        read_groups(bad)


def test_cli_takes_lora_warm_start_and_layout_flags(tiny_qwen2_dir, tmp_path, capsys):
    from training.reward_model.cli import main

    data = tmp_path / "data.jsonl"
    rows = long_prompt_records(12, k=3, seed=2, prompt_words=(20, 30), answer_words=(6, 9))
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    common = ["--data", str(data), "--max-length", "128", "--no-progress-bar", "--eval-fraction", "0"]
    assert main(["train", *common, "--base-model", tiny_qwen2_dir, "--output", str(tmp_path / "a")]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["layout"] == "shared_prompt"
    argv = ["train", *common, "--init-from", str(tmp_path / "a"), "--output", str(tmp_path / "b")]
    argv += ["--lora-r", "2", "--lora-target-modules", "q_proj,v_proj", "--no-shared-prompt"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert result["layout"] == "plain"
    meta = read_metadata(tmp_path / "b")
    assert meta["arguments"]["lora_target_modules"] == ["q_proj", "v_proj"]
    assert meta["init_from"] == str(tmp_path / "a")
