"""Training through a real `celery worker` process on Redis and PostgreSQL: end to end, and its faults."""

import os
import signal
import time
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from tests.factories import ProjectFactory, UserFactory
from tests.training_setup import (
    TINY_ARGUMENTS,
    learnable_items_create,
    learnable_rankings_create,
    quality,
    rankings_submit_through_api,
)
from training.execution import item_in_evaluation_split
from training.models import RewardModel, TrainingRun
from training.runner import processes_with_argument
from training.runs import run_process_marker, training_runs_reap_stale

pytestmark = [pytest.mark.celery_worker, pytest.mark.slow]

RUNS = "/api/training/runs/"
# Long enough that the run is still training when the test kills or cancels it.
LONG_RUN = {"epochs": 500}
WORKER_ENV = {"TRAINING_HEARTBEAT_SECONDS": "1"}


def wait_for(predicate, *, timeout: float, what: str, worker=None):
    """Poll until predicate() is truthy; fail with the worker's log when it never is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    log = worker.log()[-4000:] if worker else ""
    pytest.fail(f"Timed out after {timeout} s waiting for {what}.\n{log}")


def run_state(run_id: int) -> TrainingRun:
    return TrainingRun.objects.get(pk=run_id)


def process_group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of a process group, read from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, group = fields[0], int(fields[2])
        if group == pgid and state != "Z":
            members.append(int(stat.parent.name))
    return members


def test_rankings_to_an_active_model_that_scores_a_held_out_pair(
    live_celery_worker, roots, tiny_base, staff_client, annotator_client
):
    project = ProjectFactory(
        rankings_per_item=1, training_arguments={**TINY_ARGUMENTS, "base_model": str(tiny_base)}
    )
    items = learnable_items_create(project=project, count=24)
    assert rankings_submit_through_api(annotator_client, project) == 24
    worker = live_celery_worker(queues="training,default", **WORKER_ENV)

    created = staff_client.post(RUNS, {"project": project.pk}, format="json")

    assert created.status_code == 201, created.json()
    run_id = created.json()["id"]
    wait_for(
        lambda: run_state(run_id).status in TrainingRun.FINISHED_STATUSES,
        timeout=240,
        what="the run to finish",
        worker=worker,
    )
    run = staff_client.get(f"{RUNS}{run_id}/").json()
    assert run["status"] == "succeeded", run["error"]
    assert run["progress_percent"] == 100 and run["loss_history"]
    assert run["export_snapshot"] is not None
    model = RewardModel.objects.get(project=project)
    assert (model.version, model.is_active, model.training_run_id) == (1, True, run_id)

    # A pair the model never trained on: an item of the project's evaluation split.
    held_out = next(
        item
        for item in items
        if item_in_evaluation_split(
            project_id=project.pk, item_id=item.pk, fraction=TINY_ARGUMENTS["eval_fraction"]
        )
    )
    answers = sorted(held_out.answers.all(), key=lambda answer: -quality(answer.text))
    best, worst = answers[0].text, answers[-1].text
    scored = staff_client.post(
        f"/api/projects/{project.pk}/score/",
        {"conversation": held_out.conversation, "answers": [worst, best]},
        format="json",
    )
    assert scored.status_code == 200, scored.json()
    assert scored.json()["version"] == 1
    reward_worst, reward_best = scored.json()["rewards"]
    assert reward_best > reward_worst


@pytest.fixture
def project_with_active_model(roots, tiny_base):
    project = ProjectFactory(training_arguments={**TINY_ARGUMENTS, "base_model": str(tiny_base)})
    learnable_rankings_create(project=project, count=16)
    active = RewardModel.objects.create(
        project=project, version=1, artifact_path=str(tiny_base), is_active=True
    )
    return project, active


def test_worker_killed_mid_run_is_failed_by_the_reaper_and_a_retry_succeeds(
    live_celery_worker, settings, project_with_active_model, staff_client
):
    project, active = project_with_active_model
    worker = live_celery_worker(queues="training", **WORKER_ENV)
    run_id = staff_client.post(RUNS, {"project": project.pk, "arguments": LONG_RUN}, format="json").json()[
        "id"
    ]
    wait_for(lambda: run_state(run_id).step >= 1, timeout=120, what="training progress", worker=worker)
    engine_pgid = run_state(run_id).process_id

    # The worker and its pool process die at once, as under the OOM killer or a lost machine.
    os.killpg(worker.process.pid, signal.SIGKILL)
    worker.process.wait()

    wait_for(
        lambda: not process_group_members(engine_pgid), timeout=30, what="the engine to die with its worker"
    )
    assert run_state(run_id).status == TrainingRun.Status.RUNNING  # nobody has noticed yet
    settings.TRAINING_STALE_AFTER_SECONDS = 3
    wait_for(lambda: training_runs_reap_stale(), timeout=30, what="the reaper to fail the run")
    run = run_state(run_id)
    assert run.status == TrainingRun.Status.FAILED
    assert "No heartbeat from worker" in run.error
    active.refresh_from_db()
    assert active.is_active
    assert list(RewardModel.objects.filter(project=project)) == [active]

    worker = live_celery_worker(queues="training", **WORKER_ENV)
    retried = staff_client.post(f"{RUNS}{run_id}/retry/", {"arguments": {"epochs": 2}}, format="json")
    assert retried.status_code == 201, retried.json()
    retry_id = retried.json()["id"]
    wait_for(
        lambda: run_state(retry_id).status in TrainingRun.FINISHED_STATUSES,
        timeout=240,
        what="the retry to finish",
        worker=worker,
    )
    retry = run_state(retry_id)
    assert retry.status == TrainingRun.Status.SUCCEEDED, retry.error
    assert retry.retry_of_id == run_id
    assert retry.reward_model.version == 2


def test_a_run_whose_loss_becomes_nan_fails_with_that_reason_and_the_active_model_stays(
    live_celery_worker, project_with_active_model, staff_client
):
    project, active = project_with_active_model
    worker = live_celery_worker(queues="training,default", **WORKER_ENV)

    created = staff_client.post(RUNS, {"project": project.pk, "arguments": {"lr": 1e12}}, format="json")

    assert created.status_code == 201, created.json()
    run_id = created.json()["id"]
    wait_for(
        lambda: run_state(run_id).status in TrainingRun.FINISHED_STATUSES,
        timeout=120,
        what="the run to finish",
        worker=worker,
    )
    run = staff_client.get(f"{RUNS}{run_id}/").json()
    # Before, the NaN could not be stored, the run stayed running until the reaper blamed the worker.
    assert run["status"] == "failed"
    assert (
        "TrainingDiverged: the loss became NaN at step 2 (epoch 1); lower the learning rate" in run["error"]
    )
    active.refresh_from_db()
    assert active.is_active
    assert list(RewardModel.objects.filter(project=project)) == [active]


def test_cancel_during_a_torchrun_run_kills_the_whole_process_tree(
    live_celery_worker, roots, tiny_base, staff_client
):
    project = ProjectFactory(training_arguments={**TINY_ARGUMENTS, "base_model": str(tiny_base)})
    learnable_rankings_create(project=project, count=16)
    # Two "GPUs" puts the engine under torchrun with two workers; on this CPU-only machine they use gloo.
    worker = live_celery_worker(queues="training", TRAINING_GPUS="2", **WORKER_ENV)
    run_id = staff_client.post(RUNS, {"project": project.pk, "arguments": LONG_RUN}, format="json").json()[
        "id"
    ]
    wait_for(lambda: run_state(run_id).step >= 1, timeout=180, what="training progress", worker=worker)
    marker = run_process_marker(run_state(run_id))
    # torchrun and its two workers (each in a session of its own, so not in torchrun's process group).
    assert len(processes_with_argument(marker)) >= 3
    second = staff_client.post(RUNS, {"project": project.pk}, format="json")
    assert second.status_code == 409
    assert f"already has training run #{run_id} running" in second.json()["detail"]

    response = staff_client.post(f"{RUNS}{run_id}/cancel/")

    assert response.status_code == 200
    wait_for(
        lambda: run_state(run_id).status == TrainingRun.Status.CANCELLED,
        timeout=60,
        what="the run to be cancelled",
        worker=worker,
    )
    assert processes_with_argument(marker) == []
    assert not RewardModel.objects.filter(project=project).exists()
    assert worker.process.poll() is None  # the worker itself lives on for the next run


def test_engine_killed_alone_fails_the_run_at_once_and_the_worker_lives_on(
    live_celery_worker, roots, tiny_base, staff_client
):
    project = ProjectFactory(training_arguments={**TINY_ARGUMENTS, "base_model": str(tiny_base)})
    learnable_rankings_create(project=project, count=16)
    worker = live_celery_worker(queues="training", **WORKER_ENV)
    run_id = staff_client.post(RUNS, {"project": project.pk, "arguments": LONG_RUN}, format="json").json()[
        "id"
    ]
    wait_for(lambda: run_state(run_id).step >= 1, timeout=120, what="training progress", worker=worker)

    os.killpg(run_state(run_id).process_id, signal.SIGKILL)  # e.g. the OOM killer picks the engine

    wait_for(
        lambda: run_state(run_id).status == TrainingRun.Status.FAILED,
        timeout=30,
        what="the worker to notice",
        worker=worker,
    )
    assert "was killed by SIGKILL" in run_state(run_id).error
    assert worker.process.poll() is None
    # The project is free again for the next trigger.
    assert not TrainingRun.objects.filter(project=project, status__in=TrainingRun.ACTIVE_STATUSES).exists()


@pytest.mark.django_db(transaction=True)
def test_with_the_broker_down_annotators_keep_working_and_the_trigger_reports_it(broker_down, staff_client):
    project = ProjectFactory(rankings_per_item=1)
    learnable_items_create(project=project, count=3)
    annotator = UserFactory()
    client = APIClient()
    client.force_authenticate(annotator)

    assert rankings_submit_through_api(client, project) == 3
    response = staff_client.post(RUNS, {"project": project.pk}, format="json")

    assert project.items.filter(rankings__annotator=annotator).count() == 3
    assert response.status_code == 503
    assert "Celery broker is unreachable" in response.json()["detail"]
    assert "6390" in response.json()["detail"]
    run = TrainingRun.objects.get(project=project)
    # Not left queued: a dead broker must not block the next trigger once it is back.
    assert run.status == TrainingRun.Status.FAILED and "broker" in run.error
