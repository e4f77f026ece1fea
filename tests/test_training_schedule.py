"""The retrain schedule: a beat entry every 15 minutes that starts a run once enough new rankings exist."""

import logging

import pytest
from django.db.models import Max
from django.urls import reverse
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from annotation.annotator_quality import annotator_exclude
from annotation.gold import gold_item_set
from annotation.models import Ranking, RankingRevision
from annotation.revisions import ranking_revise
from rewardlab.celery import app
from tests.factories import STAFF_PERMISSIONS, ProjectFactory, RankingFactory, UserFactory
from tests.training_setup import learnable_rankings_create
from training.models import TrainingRun
from training.runs import rankings_new_since_last_success
from training.tasks import check_retrain, reap_stale_runs, run_training

pytestmark = pytest.mark.django_db


def check() -> list[int]:
    """Run the beat task the way the worker does (in-process, same code path)."""
    return check_retrain.apply().get()


@pytest.mark.django_db(serialized_rollback=True)
def test_beat_checks_every_15_minutes_and_reaps_every_minute_on_the_default_queue():
    retrain = PeriodicTask.objects.get(task="training.tasks.check_retrain")
    reaper = PeriodicTask.objects.get(task="training.tasks.reap_stale_runs")

    assert (retrain.interval.every, retrain.interval.period) == (15, IntervalSchedule.MINUTES)
    assert (reaper.interval.every, reaper.interval.period) == (1, IntervalSchedule.MINUTES)
    assert retrain.enabled and reaper.enabled
    assert retrain.queue == reaper.queue == "default"


def test_only_the_training_task_is_routed_to_the_training_queue():
    def queue_of(task):
        return app.amqp.router.route(dict(task._get_exec_options()), task.name, (), {}, task)["queue"].name

    assert queue_of(run_training) == "training"
    assert queue_of(check_retrain) == queue_of(reap_stale_runs) == "default"
    assert run_training.acks_late and run_training.reject_on_worker_lost


def test_schedule_starts_a_run_once_enough_new_rankings_exist_and_not_before():
    project = ProjectFactory(retrain_min_new_rankings=5)
    learnable_rankings_create(project=project, count=4)

    assert check() == []
    RankingFactory(item__project=project)
    started = check()

    run = TrainingRun.objects.get(project=project)
    assert started == [run.pk]
    assert (run.trigger, run.status) == (TrainingRun.Trigger.SCHEDULE, TrainingRun.Status.QUEUED)
    assert check() == []  # the queued run blocks a second one
    assert TrainingRun.objects.filter(project=project).count() == 1


def test_schedule_counts_only_rankings_newer_than_the_last_successful_run():
    project = ProjectFactory(retrain_min_new_rankings=3)
    learnable_rankings_create(project=project, count=6)
    covered = Ranking.objects.filter(item__project=project).aggregate(m=Max("pk"))["m"]
    TrainingRun.objects.create(project=project, trigger="api", status="succeeded", last_ranking_id=covered)
    # A failed run after it trained on nothing that counts.
    TrainingRun.objects.create(
        project=project, trigger="api", status="failed", last_ranking_id=covered + 1000
    )

    assert check() == []
    learnable_rankings_create(project=project, count=3, seed=1)
    assert len(check()) == 1


def test_schedule_leaves_out_rankings_training_never_reads_gold_items_and_excluded_annotators():
    project = ProjectFactory(retrain_min_new_rankings=2)
    golden, other = learnable_rankings_create(project=project, count=2)
    gold_item_set(item=golden, order=golden.rankings.get().order)
    assert rankings_new_since_last_success(project=project) == 1
    annotator_exclude(project=project, annotator=other.rankings.get().annotator, by=None)
    assert rankings_new_since_last_success(project=project) == 0
    assert check() == []
    learnable_rankings_create(project=project, count=2, seed=1)  # another annotator's
    assert rankings_new_since_last_success(project=project) == 2
    assert len(check()) == 1


def _revise(ranking: Ranking) -> None:
    """The annotator changes their ranking: reversed order (annotation.revisions)."""
    ranking_revise(ranking_id=ranking.pk, annotator=ranking.annotator, order=ranking.order[::-1])


def test_schedule_counts_rankings_changed_since_the_last_successful_run_once_each():
    project = ProjectFactory(retrain_min_new_rankings=2)
    learnable_rankings_create(project=project, count=4)
    first, second, third, _ = Ranking.objects.filter(item__project=project).order_by("pk")
    _revise(first)  # before the run: the run trained on this version
    covered = Ranking.objects.filter(item__project=project).aggregate(m=Max("pk"))["m"]
    TrainingRun.objects.create(
        project=project,
        trigger="api",
        status="succeeded",
        last_ranking_id=covered,
        last_revision_id=RankingRevision.objects.aggregate(m=Max("pk"))["m"],
    )
    assert rankings_new_since_last_success(project=project) == 0

    _revise(second)
    _revise(second)  # one ranking changed twice is one changed ranking
    assert rankings_new_since_last_success(project=project) == 1
    assert check() == []
    _revise(third)
    assert rankings_new_since_last_success(project=project) == 2
    added = RankingFactory(item__project=project)
    _revise(added)  # new since the run and changed since: one new ranking
    assert rankings_new_since_last_success(project=project) == 3
    assert len(check()) == 1


def test_schedule_skips_inactive_projects():
    project = ProjectFactory(retrain_min_new_rankings=1, is_active=False)
    learnable_rankings_create(project=project, count=2)

    assert check() == []
    # The same rankings in an active project do start a run: the skip is about is_active alone.
    active = ProjectFactory(retrain_min_new_rankings=1)
    learnable_rankings_create(project=active, count=2)
    assert check() == [TrainingRun.objects.get(project=active).pk]
    assert not TrainingRun.objects.filter(project=project).exists()


def test_a_project_with_a_mistyped_training_argument_is_marked_and_the_projects_after_it_still_start(
    client, caplog
):
    # Named so that the beat run (projects by name) reaches the bad project first.
    bad = ProjectFactory(name="A project", retrain_min_new_rankings=1, training_arguments={"epoch": 3})
    good = ProjectFactory(name="B project", retrain_min_new_rankings=1)
    for project in (bad, good):
        learnable_rankings_create(project=project, count=2)

    with caplog.at_level(logging.WARNING, logger="training.runs"):
        started = check()

    run = TrainingRun.objects.get(project=good)
    assert started == [run.pk] and run.status == TrainingRun.Status.QUEUED
    mark = TrainingRun.objects.get(project=bad)
    assert (mark.trigger, mark.status) == (TrainingRun.Trigger.SCHEDULE, TrainingRun.Status.FAILED)
    assert "Unknown training argument 'epoch'" in mark.error and mark.arguments == {"epoch": 3}
    assert f"project {bad.pk} not started" in caplog.text and "'epoch'" in caplog.text
    # Staff see the reason where they follow the project's runs.
    client.force_login(UserFactory(is_staff=True, permissions=STAFF_PERMISSIONS))
    page = client.get(reverse("training:project-runs", args=[bad.pk])).content.decode()
    assert "Unknown training argument" in page

    # The next beats leave the mark as it is while the reason stays the same.
    assert check() == [] and check() == []
    assert TrainingRun.objects.filter(project=bad).count() == 1
    # Once the argument is fixed, the schedule starts the project like any other.
    bad.training_arguments = {"epochs": 3}
    bad.save()
    assert check() == [TrainingRun.objects.get(project=bad, status=TrainingRun.Status.QUEUED).pk]


def test_a_project_marked_once_is_marked_again_when_its_reason_changes():
    project = ProjectFactory(retrain_min_new_rankings=1, training_arguments={"epoch": 3})
    learnable_rankings_create(project=project, count=2)

    check()
    project.training_arguments = {"lr": "fast"}
    project.save()
    check()

    errors = list(TrainingRun.objects.filter(project=project).order_by("id").values_list("error", flat=True))
    assert len(errors) == 2 and "'epoch'" in errors[0] and "'lr' must be a finite number" in errors[1]
