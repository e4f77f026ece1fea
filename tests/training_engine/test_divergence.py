"""A loss or gradient norm that stops being finite stops the run with why, at the step it happened."""

from __future__ import annotations

import json

import pytest
import torch

from training.reward_model import TrainConfig, groups_from_records, train
from training.reward_model import trainer as trainer_module
from training.reward_model.synthetic import synthetic_records
from training.reward_model.trainer import TrainingDiverged


@pytest.fixture(scope="module")
def groups():
    return groups_from_records(synthetic_records(40, k=3, seed=6, min_words=3, max_words=8))


def _config(base: str, **overrides) -> TrainConfig:
    values = {"epochs": 3, "max_length": 32, "batch_tokens": 256, "show_progress_bar": False, **overrides}
    return TrainConfig(base_model=base, **values)


@pytest.mark.parametrize("log_every", [1, 100])
def test_a_huge_learning_rate_stops_at_the_first_nan_step_whatever_the_logging(
    tiny_bert_dir, groups, tmp_path, log_every
):
    events = []
    out = tmp_path / "model"

    with pytest.raises(TrainingDiverged) as raised:
        train(
            _config(tiny_bert_dir, lr=1e12, log_every=log_every, output_dir=str(out)),
            groups,
            groups[:5],
            on_event=events.append,
        )

    # The first step trains the random model once; the second sees the loss of its enormous update.
    assert str(raised.value) == (
        "the loss became NaN at step 2 (epoch 1); lower the learning rate (it was 1e+12)"
    )
    # No event carries the NaN (JSON cannot hold it), no evaluation runs and no model is saved.
    losses = [e["loss"] for e in events if e["event"] == "progress"]
    assert losses == ([pytest.approx(0.693, abs=0.01)] if log_every == 1 else [])
    assert not [e for e in events if e["event"] in ("eval", "epoch")]
    assert not out.exists()


def test_a_gradient_norm_that_is_not_finite_stops_the_run_too(tiny_bert_dir, groups, monkeypatch):
    real = trainer_module._grad_norm
    steps = []

    def infinite_at_the_third_step(*args):
        steps.append(1)
        norm = real(*args)
        return torch.full_like(norm, float("inf")) if len(steps) == 3 else norm

    monkeypatch.setattr(trainer_module, "_grad_norm", infinite_at_the_third_step)

    with pytest.raises(
        TrainingDiverged, match=r"^the gradient norm became NaN or infinite at step 3 \(epoch 1\)"
    ):
        train(_config(tiny_bert_dir, lr=1e-3, log_every=10), groups)


def _refused(constant: str):
    raise AssertionError(f"{constant} written to the protocol: JSON has no such value")


def test_the_cli_ends_a_diverged_run_with_its_error_line(tiny_bert_dir, tmp_path, capsys):
    from training.reward_model.cli import main

    data = tmp_path / "data.jsonl"
    rows = synthetic_records(40, k=3, seed=6, min_words=3, max_words=8)
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "model"
    arguments = ["--data", str(data), "--output", str(out), "--base-model", tiny_bert_dir, "--lr", "1e12"]

    code = main(["train", *arguments, "--max-length", "32", "--batch-tokens", "256", "--no-progress-bar"])

    lines = capsys.readouterr().out.splitlines()
    events = [json.loads(line, parse_constant=_refused) for line in lines]
    assert code == 1
    assert events[-1] == {
        "event": "error",
        "error": "TrainingDiverged: the loss became NaN at step 2 (epoch 1); lower the learning rate "
        "(it was 1e+12)",
    }
    assert not out.exists()


def test_the_check_reads_nothing_from_the_device_between_logged_steps(tiny_bert_dir, groups, monkeypatch):
    reads = []
    real = trainer_module._divergence_check
    monkeypatch.setattr(trainer_module, "_divergence_check", lambda *a: reads.append(1) or real(*a))

    result = train(_config(tiny_bert_dir, epochs=1, lr=1e-3, log_every=1000), groups)

    # Only at the last step (a progress event) and at the end of the epoch, however many steps ran.
    assert result["steps"] > 2 and len(reads) == 2
