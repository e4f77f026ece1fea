"""Training runs executed in this process: the real engine in a child process, real PostgreSQL."""

import sys
import time

import pytest
from django.db import DataError

from annotation.models import ExportSnapshot, Ranking
from annotation.revisions import ranking_revise
from tests.factories import ProjectFactory
from tests.training_setup import TINY_ARGUMENTS, learnable_rankings_create
from training import execution
from training.execution import item_in_evaluation_split, training_run_execute
from training.models import RewardModel, TrainingRun
from training.registry import reward_model_activate
from training.runs import (
    TrainingError,
    rankings_new_since_last_success,
    run_directory,
    training_run_cancel,
    training_runs_reap_stale,
)

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


@pytest.fixture
def roots(roots, settings):
    settings.TRAINING_HEARTBEAT_SECONDS = 1
    return roots


@pytest.fixture
def project(tiny_base):
    project = ProjectFactory(training_arguments={**TINY_ARGUMENTS, "base_model": str(tiny_base)})
    learnable_rankings_create(project=project, count=24)
    return project


def queued_run(project, **arguments):
    return TrainingRun.objects.create(
        project=project,
        trigger=TrainingRun.Trigger.ADMIN,
        arguments={**project.training_arguments, **arguments},
    )


def test_first_model_activates_and_a_worse_one_waits_for_staff(roots, project):
    # One ranking changed before the run (to the same order: the data stays learnable); the run covers it.
    before = Ranking.objects.filter(item__project=project).last()
    ranking_revise(ranking_id=before.pk, annotator=before.annotator, order=before.order)
    run = training_run_execute(run_id=queued_run(project).pk, worker_hostname="test")

    run.refresh_from_db()
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    assert run.export_snapshot.format == ExportSnapshot.Format.RANKINGS
    assert run.train_row_count + run.eval_row_count == 24
    assert run.eval_row_count > 0
    assert run.step == run.total_steps > 0
    assert run.loss_history and run.result_metrics["eval"]["pairs"] > 0
    # Every held-out row was read as a ranking of its three answers: three pairs each, none skipped.
    assert run.result_metrics["eval"]["pairs"] == 3 * run.eval_row_count
    first = run.reward_model
    assert (first.version, first.is_active) == (1, True)
    assert first.pairwise_accuracy is not None
    run_files = roots / "models" / f"project-{project.pk}" / f"run-{run.pk}"
    assert (run_files / "model" / "config.json").exists()
    assert not (run_files / "data").exists()  # the split of the kept snapshot, not needed any more
    # The schedule counts from what this run covered: a ranking changed since counts as new, not one
    # changed before.
    assert run.last_revision_id == before.revisions.get().pk
    assert rankings_new_since_last_success(project=project) == 0
    changed = Ranking.objects.filter(item__project=project).first()
    ranking_revise(ranking_id=changed.pk, annotator=changed.annotator, order=changed.order[::-1])
    assert rankings_new_since_last_success(project=project) == 1

    # lr 0 leaves the random base model untouched: worse than the trained one on the same split.
    run = training_run_execute(run_id=queued_run(project, lr=0.0, epochs=1).pk)

    second = run.reward_model
    first.refresh_from_db()
    assert run.status == TrainingRun.Status.SUCCEEDED
    assert first.is_active and not second.is_active
    assert second.compared_with == first
    assert second.compared_accuracy is not None and second.pairwise_accuracy < second.compared_accuracy
    assert "below the active v1" in second.not_active_reason

    reward_model_activate(reward_model=second)

    assert list(RewardModel.objects.filter(project=project, is_active=True)) == [second]


def test_engine_error_fails_the_run_with_the_error(roots, project, tmp_path):
    run = training_run_execute(run_id=queued_run(project, base_model=str(tmp_path / "no-such-model")).pk)

    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED
    assert "exited with status 1" in run.error
    assert "no-such-model" in run.error
    assert run.finished_at is not None
    assert not RewardModel.objects.filter(project=project).exists()
    assert not (roots / "models" / f"project-{project.pk}" / f"run-{run.pk}").exists()


def test_project_without_rankings_fails_with_a_clear_message(roots, tiny_base):
    project = ProjectFactory(training_arguments={"base_model": str(tiny_base)})

    run = training_run_execute(run_id=queued_run(project).pk)

    assert run.status == TrainingRun.Status.FAILED
    assert run.error == "The project has no rankings to train on."


def test_cancelled_queued_run_is_never_executed(roots, project):
    run = queued_run(project)
    training_run_cancel(run=run)

    assert training_run_execute(run_id=run.pk) is None
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.CANCELLED
    with pytest.raises(TrainingError, match="already finished"):
        training_run_cancel(run=run)


def test_reaper_fails_only_runs_whose_heartbeat_is_stale_and_deletes_their_files(roots, settings, project):
    from django.utils import timezone

    settings.TRAINING_STALE_AFTER_SECONDS = 60
    now = timezone.now()
    stale = queued_run(project)
    TrainingRun.objects.filter(pk=stale.pk).update(
        status=TrainingRun.Status.RUNNING, heartbeat_at=now - timezone.timedelta(seconds=61)
    )
    fresh = TrainingRun.objects.create(
        project=ProjectFactory(),
        trigger="api",
        status="running",
        heartbeat_at=now - timezone.timedelta(seconds=5),
    )

    for run in (stale, fresh):  # what a worker that died mid-run leaves behind
        (run_directory(run) / "data").mkdir(parents=True)
        (run_directory(run) / "data" / "train.jsonl").write_text("{}\n")

    assert training_runs_reap_stale(now=now) == [stale.pk]
    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert stale.status == TrainingRun.Status.FAILED and "No heartbeat" in stale.error
    assert fresh.status == TrainingRun.Status.RUNNING
    assert not run_directory(stale).exists()
    assert (run_directory(fresh) / "data" / "train.jsonl").exists()


def test_evaluation_split_is_fixed_per_item():
    picks = [item_in_evaluation_split(project_id=1, item_id=i, fraction=0.25) for i in range(400)]

    assert picks == [item_in_evaluation_split(project_id=1, item_id=i, fraction=0.25) for i in range(400)]
    assert 60 < sum(picks) < 140


@pytest.mark.django_db(transaction=True)
def test_heartbeat_goes_on_while_a_slow_export_runs(roots, settings, monkeypatch, tiny_base):
    settings.TRAINING_HEARTBEAT_SECONDS = 0.2
    project = ProjectFactory(training_arguments={"base_model": str(tiny_base)})
    run = queued_run(project)
    seen = []
    real_export = execution.export_snapshot_create

    def slow_export(**kwargs):
        seen.append(TrainingRun.objects.get(pk=run.pk).heartbeat_at)
        time.sleep(1.5)
        seen.append(TrainingRun.objects.get(pk=run.pk).heartbeat_at)
        return real_export(**kwargs)

    monkeypatch.setattr(execution, "export_snapshot_create", slow_export)

    training_run_execute(run_id=run.pk)

    assert seen[1] > seen[0]


def test_a_worker_stopped_mid_run_keeps_the_files_its_engine_may_still_be_using(roots, project, monkeypatch):
    engines = []
    start = execution.EngineProcess.start

    def start_and_keep(self):
        engines.append(self)
        return start(self)

    def worker_stops(self, **kwargs):
        raise SystemExit("the worker is shutting down")  # not an Exception: the run's handler lets it go
        yield

    monkeypatch.setattr(execution.EngineProcess, "start", start_and_keep)
    monkeypatch.setattr(execution.EngineProcess, "outputs", worker_stops)
    run = queued_run(project)
    try:
        with pytest.raises(SystemExit):
            training_run_execute(run_id=run.pk)
        run_files = roots / "models" / f"project-{project.pk}" / f"run-{run.pk}"
        assert engines and engines[0].process.poll() is None, "the engine outlives the stopped worker"
        assert (run_files / "data" / "train.jsonl").exists()
    finally:
        for engine in engines:
            engine.terminate(grace_seconds=1)


def test_a_diverging_run_fails_with_the_engines_reason_and_the_active_model_stays(roots, project, tiny_base):
    active = RewardModel.objects.create(
        project=project, version=1, artifact_path=str(tiny_base), is_active=True
    )

    run = training_run_execute(run_id=queued_run(project, lr=1e12).pk)

    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED
    # Before, the NaN loss could not be stored (jsonb has no NaN), the run stayed running and the reaper
    # later blamed a dead worker.
    assert run.error.startswith(
        "The training engine exited with status 1: TrainingDiverged: "
        "the loss became NaN at step 2 (epoch 1); lower the learning rate (it was 1e+12)"
    ), run.error
    assert run.finished_at is not None
    assert list(RewardModel.objects.filter(project=project)) == [active]
    active.refresh_from_db()
    assert active.is_active
    assert not (roots / "models" / f"project-{project.pk}" / f"run-{run.pk}").exists()


# An engine that trains on through a NaN and reports success, as an older one did.
ENGINE_THAT_GOES_ON = """
import json, sys
for step, loss in ((1, 0.69), (2, float("nan")), (3, float("inf"))):
    print(json.dumps({"event": "progress", "step": step, "total_steps": 3, "epoch": step / 3, "loss": loss,
                      "grad_norm": float("nan")}), flush=True)
print(json.dumps({"event": "eval", "epoch": 1, "step": 3, "pairwise_accuracy": float("nan"), "pairs": 4}))
print("a line with a NUL", chr(0), "in it", file=sys.stderr)
result = {"final_loss": float("nan"), "eval": {"pairwise_accuracy": float("nan")}}
print(json.dumps({"event": "result", **result}))
"""


def test_numbers_that_json_cannot_hold_are_stored_as_none_and_a_nan_loss_registers_no_model(
    roots, project, monkeypatch
):
    monkeypatch.setattr(
        execution, "engine_command", lambda **kwargs: [sys.executable, "-c", ENGINE_THAT_GOES_ON]
    )

    run = training_run_execute(run_id=queued_run(project).pk)

    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED
    assert (
        run.error
        == "The training loss became nan at step 2. No model was registered; lower the learning rate."
    )
    assert run.loss_history == [[1, 0.69]]
    assert run.eval_metrics == {"epoch": 1, "step": 3, "pairwise_accuracy": None, "pairs": 4}
    assert run.result_metrics == {"final_loss": None, "eval": {"pairwise_accuracy": None}}
    assert "a line with a NUL \ufffd in it" in run.log_tail
    assert not RewardModel.objects.filter(project=project).exists()


def test_a_run_whose_progress_cannot_be_saved_still_ends_with_its_reason(roots, project, monkeypatch):
    run = queued_run(project)
    TrainingRun.objects.filter(pk=run.pk).update(status=TrainingRun.Status.RUNNING)
    real_save = execution._run_save

    def progress_refused(run, engine, **extra):
        real_save(run, engine, step=1, total_steps=1)  # a write that went through, then one that did not
        raise DataError("invalid input syntax for type json")

    monkeypatch.setattr(execution, "_run_save", progress_refused)

    execution._run_finish(run, TrainingRun.Status.FAILED, error="the engine's reason\x00")

    run.refresh_from_db()
    assert (run.status, run.error) == (TrainingRun.Status.FAILED, "the engine's reason\ufffd")
    assert run.finished_at is not None and run.step == 0  # the refused write was rolled back
