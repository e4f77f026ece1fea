"""A suite uploaded on its page, scored in a run that a real `celery worker` executes, shown per subset."""

import json
import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from tests.evaluation_setup import suite_rows
from tests.factories import ProjectFactory
from tests.training_setup import TINY_ARGUMENTS, learnable_rankings_create, tiny_base_model_save
from training.models import EvaluationSuite, RewardModel, SuiteResult, TrainingRun

pytestmark = [pytest.mark.celery_worker, pytest.mark.slow]


def test_a_suite_uploaded_on_its_page_is_scored_in_the_workers_run_and_shown_per_subset(
    live_celery_worker, roots, staff, staff_client
):
    base = tiny_base_model_save(roots / "tiny-base")
    project = ProjectFactory(training_arguments={**TINY_ARGUMENTS, "base_model": str(base)})
    learnable_rankings_create(project=project, count=24)
    pages = Client()
    pages.force_login(staff)
    text = "".join(json.dumps(row) + "\n" for row in suite_rows(count=16))
    pages.post(
        reverse("training:suite-upload", args=[project.pk]),
        {"name": "markers", "file": SimpleUploadedFile("rewardbench-like.jsonl", text.encode())},
    )
    suite = EvaluationSuite.objects.get(project=project)
    worker = live_celery_worker(queues="training,default", TRAINING_HEARTBEAT_SECONDS="1")

    run_id = staff_client.post("/api/training/runs/", {"project": project.pk}, format="json").json()["id"]
    deadline = time.monotonic() + 240
    while TrainingRun.objects.get(pk=run_id).status not in TrainingRun.FINISHED_STATUSES:
        if time.monotonic() > deadline:
            pytest.fail(f"The run did not finish in time.\n{worker.log()[-4000:]}")
        time.sleep(0.5)

    run = TrainingRun.objects.get(pk=run_id)
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    version = RewardModel.objects.get(project=project)
    result = SuiteResult.objects.get(reward_model=version, suite=suite)
    assert result.pairs == 16 and set(result.figures["subsets"]) == {"good-vs-bad", "good-vs-neutral"}
    assert run.result_metrics["suites"][str(suite.pk)]["pairwise_accuracy"] == result.pairwise_accuracy

    page = pages.get(reverse("training:project-models", args=[project.pk])).content.decode()
    table = page[page.index('data-suite="markers"') :]
    for subset in ("good-vs-bad", "good-vs-neutral"):
        row = table[table.index(f'<th scope="row">{subset}</th>') :].split("</tr>")[0]
        assert f"{result.figures['subsets'][subset]:.3f}" in row
