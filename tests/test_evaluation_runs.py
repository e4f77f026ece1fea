"""Evaluation inside real training runs (the worker's service, the engine in a child process): every figure
stored with the version, each suite scored per subset, and a version better on the split held back by a
suite that it is worse on.
"""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.evaluation_setup import suite_rows
from tests.factories import ProjectFactory, RankingFactory, UserFactory
from tests.training_setup import (
    TINY_ARGUMENTS,
    best_first_order,
    learnable_rankings_create,
)
from training.execution import training_run_execute
from training.models import SuiteResult, TrainingRun
from training.suites import evaluation_suite_create

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


@pytest.fixture
def roots(roots, settings):
    settings.TRAINING_HEARTBEAT_SECONDS = 1
    return roots


def suite_upload(project, name: str, rows: list[dict], **options):
    text = "".join(json.dumps(row) + "\n" for row in rows)
    return evaluation_suite_create(
        project=project, upload=SimpleUploadedFile(f"{name}.jsonl", text.encode()), name=name, **options
    )


def run_now(project, **arguments) -> TrainingRun:
    run = TrainingRun.objects.create(
        project=project,
        trigger=TrainingRun.Trigger.ADMIN,
        arguments={**project.training_arguments, **arguments},
    )
    run = training_run_execute(run_id=run.pk, worker_hostname="test")
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    return run


def test_a_run_stores_every_figure_and_each_suites_accuracy_per_subset(roots, tiny_base):
    project = ProjectFactory(training_arguments={**TINY_ARGUMENTS, "base_model": str(tiny_base)})
    items = learnable_rankings_create(project=project, count=32)
    second = UserFactory()
    for item in items:  # a second annotator on every item: the human ceiling has pairs to count
        RankingFactory(item=item, annotator=second, order=best_first_order(item))
    suite = suite_upload(project, "markers", suite_rows(count=16))

    version = run_now(project).reward_model

    figures = version.metrics["evaluation"]
    assert figures["pairs"] == version.eval_pairs > 0
    low, high = figures["accuracy_ci"]
    assert low <= version.pairwise_accuracy <= high
    assert figures["human_ceiling"] == 1.0 and figures["ceiling_pairs"] > 0  # both annotators agree
    for key in ("length_correlation", "accuracy_longer_preferred", "accuracy_shorter_preferred", "ece"):
        assert key in figures
    assert len(figures["calibration"]) == 10 and figures["length_points"]
    result = SuiteResult.objects.get(reward_model=version, suite=suite)
    assert result.pairs == 16
    assert set(result.figures["subsets"]) == {"good-vs-bad", "good-vs-neutral"}
    assert result.figures["subsets"]["good-vs-bad"] >= 0.75  # the tiny model learns the marker words
    assert result.figures["sha256"] == suite.sha256
    assert list((roots / "models").rglob(f"evaluation/suite-{suite.pk}.jsonl"))


def test_a_version_better_on_the_split_is_held_back_by_a_suite_it_is_worse_on(roots, tiny_base):
    project = ProjectFactory(training_arguments={**TINY_ARGUMENTS, "base_model": str(tiny_base)})
    # 64 items, so that the split holds some 16 of them: over the 3 that 32 could give, the untrained
    # model scored 0.89 by chance and the trained one 0.78, which this test is not about.
    learnable_rankings_create(project=project, count=64)
    # A suite that prefers the answers the project's annotators put last, in both its subsets: learning the
    # project brings it near 0, below any model that has not learnt it. (With one subset turned round, a
    # model that learnt the project scores 0.5 there, and the untrained one scored 0.21 in one CI run.)
    rows = suite_rows(count=24, reverse="all")
    suite = suite_upload(project, "contrarian", rows, holds_back_promotion=True)
    untrained = run_now(project, lr=0.0, epochs=1).reward_model  # the random base model, active as the first
    assert untrained.is_active

    trained = run_now(project).reward_model

    untrained.refresh_from_db()
    ours = SuiteResult.objects.get(reward_model=trained, suite=suite).pairwise_accuracy
    theirs = SuiteResult.objects.get(reward_model=untrained, suite=suite).pairwise_accuracy
    assert trained.pairwise_accuracy >= trained.compared_accuracy  # not worse on the project's split
    assert ours < theirs
    assert untrained.is_active and not trained.is_active
    assert trained.not_active_reason == (
        f"Accuracy {ours:.3f} on suite “contrarian” is below the active v1's {theirs:.3f}."
    )
    # And the pairs whose order changed since v1 are recorded, with both versions' margins.
    assert trained.flips["version"] == 1 and trained.flips["compared_pairs"] == trained.eval_pairs
    assert trained.flips["flipped"] > 0 and len(trained.flips["sample"]) == min(trained.flips["flipped"], 50)
