"""The life of a training run on the Django side: validate its arguments, create, retry, cancel, reap.

Also the beat's schedule that starts runs for projects with enough new rankings, and where a run keeps
its files. What the training worker does with a run is in `execution`; the versions it produces are in
`registry`.
"""

from __future__ import annotations

import logging
import os
import shutil
from contextlib import suppress
from functools import partial
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotation.models import AnnotatorExclusion, Project, Ranking, RankingRevision
from annotation.projects import TRAINING_ARGUMENTS, training_arguments_validate
from common.errors import Conflict, DomainError, NotFound, Unavailable

from .models import RewardModel, TrainingRun
from .runner import kill_processes_with_argument

log = logging.getLogger(__name__)

# The flag of each training argument the engine reads (`annotation.projects.TRAINING_ARGUMENTS` names and
# checks them all; `eval_fraction` and `init_from_active` are read by this side: to split the data, and
# to give the engine the active version's directory, `execution._warm_start_arguments`).
ENGINE_FLAGS: dict[str, str] = {
    "base_model": "--base-model",
    "epochs": "--epochs",
    "lr": "--lr",
    "max_length": "--max-length",
    "batch_tokens": "--batch-tokens",
    "seed": "--seed",
    "lora_r": "--lora-r",
    "lora_alpha": "--lora-alpha",
    "lora_target_modules": "--lora-target-modules",
    "center_rewards_coefficient": "--center-rewards-coefficient",
}


class TrainingError(DomainError):
    """A training request that cannot be carried out, with a message meant for the person who asked."""


class TrainingRunFinished(TrainingError, Conflict):
    """The run has ended (or not failed), so it cannot be cancelled (or retried)."""


class ProjectGone(TrainingError, NotFound):
    """The project was deleted while a run for it was being created."""


class ProjectTraining(TrainingError, Conflict):
    """The project has a run queued or running, so it cannot be deleted yet."""


def project_delete_refuse_while_training(sender, *, project: Project, **kwargs) -> None:
    """Refuse to delete a project with an unfinished run (annotation.signals.project_deleting).

    Its worker would go on training into the directory the delete removes, as for a run deleted alone
    (the admin refuses that too). project_delete holds the project row: a run inserted meanwhile is seen
    here if it committed first, and otherwise waits on that row and fails its insert once it is gone.
    """
    run = TrainingRun.objects.filter(project=project, status__in=TrainingRun.ACTIVE_STATUSES).first()
    if run is not None:
        raise ProjectTraining(
            f"Project “{project}” has training run #{run.pk} {run.status}; cancel it, or delete the "
            "project once it has finished."
        )


class TrainingRunConflict(TrainingError, Conflict):
    """The project already has a queued or running run."""

    def __init__(self, run: TrainingRun | None, project: Project):
        self.run = run
        if run is None:
            message = f"Project “{project}” already has a training run queued or running."
        else:
            message = (
                f"Project “{project}” already has training run #{run.pk} {run.status} "
                f"(since {run.created_at:%Y-%m-%d %H:%M} UTC); wait for it to finish or cancel it."
            )
        super().__init__(message)


class TrainingQueueUnavailable(TrainingError, Unavailable):
    """The Celery broker could not be reached to queue the run."""


def training_run_create(
    *,
    project: Project,
    trigger: str,
    created_by: AbstractBaseUser | None = None,
    arguments: dict[str, Any] | None = None,
    retry_of: TrainingRun | None = None,
) -> TrainingRun:
    """Queue a run for the project; refuse when one is already queued or running."""
    merged = training_arguments_validate(
        arguments={**(project.training_arguments or {}), **(arguments or {})}
    )
    if "base_model" not in merged and settings.TRAINING_DEFAULT_BASE_MODEL:
        merged["base_model"] = settings.TRAINING_DEFAULT_BASE_MODEL
    try:
        with transaction.atomic():
            # Checked before the insert so that the refusal does not depend on how each database words
            # the constraint's IntegrityError (SQLite names the column, not the constraint). No lock: an
            # import holds the project row for minutes, and a concurrent create is caught below.
            active = TrainingRun.objects.filter(
                project=project, status__in=TrainingRun.ACTIVE_STATUSES
            ).first()
            if active is not None:
                raise TrainingRunConflict(active, project)
            run = TrainingRun.objects.create(
                project=project,
                trigger=trigger,
                created_by=created_by if created_by and created_by.is_authenticated else None,
                arguments=merged,
                retry_of=retry_of,
            )
            # Queue only once the row is committed, so that the worker always finds it.
            transaction.on_commit(partial(_training_run_enqueue, run_id=run.pk))
    except IntegrityError as exc:
        # Another request created a run between the check and the insert: the constraint refused this one.
        # Or the project was deleted meanwhile (its row lock held the insert until then).
        if not Project.objects.filter(pk=project.pk).exists():
            raise ProjectGone(f"Project “{project}” was deleted; no run was started.") from exc
        active = TrainingRun.objects.filter(project=project, status__in=TrainingRun.ACTIVE_STATUSES).first()
        if active is None:
            raise
        raise TrainingRunConflict(active, project) from exc
    run.refresh_from_db()
    return run


def training_run_retry(
    *, run: TrainingRun, created_by: AbstractBaseUser | None = None, arguments: dict[str, Any] | None = None
) -> TrainingRun:
    """Queue a new run with the arguments of a failed or cancelled one, and any overrides."""
    if run.status not in (TrainingRun.Status.FAILED, TrainingRun.Status.CANCELLED):
        raise TrainingRunFinished(
            f"Run #{run.pk} is {run.status}; only failed or cancelled runs can be retried."
        )
    return training_run_create(
        project=run.project,
        trigger=run.trigger,
        created_by=created_by,
        arguments={
            **{k: v for k, v in run.arguments.items() if k in TRAINING_ARGUMENTS},
            **(arguments or {}),
        },
        retry_of=run,
    )


def _training_run_enqueue(*, run_id: int) -> None:
    from .tasks import run_training

    try:
        run_training.apply_async(args=[run_id])
    except Exception as exc:  # kombu raises OperationalError, redis-py its own errors: all mean "not queued"
        message = f"Could not queue the run: the Celery broker is unreachable ({exc})."
        # A run that never reached the queue must not block the project's next trigger.
        TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.QUEUED).update(
            status=TrainingRun.Status.FAILED, error=message, finished_at=timezone.now()
        )
        raise TrainingQueueUnavailable(message) from exc


def training_run_cancel(*, run: TrainingRun) -> TrainingRun:
    """Cancel a queued run at once; ask a running one's worker to kill the engine's process tree."""
    now = timezone.now()
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().get(pk=run.pk)
        if run.status == TrainingRun.Status.QUEUED:
            run.status = TrainingRun.Status.CANCELLED
            run.finished_at = now
            run.save(update_fields=["status", "finished_at"])
        elif run.status == TrainingRun.Status.RUNNING:
            # The worker that runs it sees this at its next heartbeat and kills the process group.
            if run.cancel_requested_at is None:
                run.cancel_requested_at = now
                run.save(update_fields=["cancel_requested_at"])
        else:
            raise TrainingRunFinished(f"Run #{run.pk} has already finished ({run.status}).")
    return run


def training_runs_reap_stale(*, now=None) -> list[int]:
    """Fail the running runs whose worker stopped sending heartbeats; return their ids."""
    now = now or timezone.now()
    cutoff = now - timezone.timedelta(seconds=settings.TRAINING_STALE_AFTER_SECONDS)
    reaped = []
    stale = TrainingRun.objects.filter(status=TrainingRun.Status.RUNNING, heartbeat_at__lt=cutoff)
    for run in stale.only("pk", "project_id", "heartbeat_at", "worker_hostname", "cancel_requested_at"):
        cancelled = run.cancel_requested_at is not None
        message = (
            f"No heartbeat from worker {run.worker_hostname or '?'} since "
            f"{run.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC: the worker or its machine died during the run. "
            "The active model is unchanged; retry the run."
        )
        updated = TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.RUNNING).update(
            status=TrainingRun.Status.CANCELLED if cancelled else TrainingRun.Status.FAILED,
            error="" if cancelled else message,
            finished_at=now,
        )
        if updated:
            log.warning("Reaped training run %s: %s", run.pk, message)
            reaped.append(run.pk)
            # Engine processes the lost worker left behind on this machine (torchrun's workers survive
            # their parent), found by the run's directory in their arguments.
            orphans = kill_processes_with_argument(run_process_marker(run))
            if orphans:
                log.warning("Killed orphaned engine processes %s of run %s", orphans, run.pk)
            run_files_tidy(run=run, directory=run_directory(run))
    return reaped


def rankings_new_since_last_success(*, project: Project) -> int:
    """How many rankings the project gained or saw changed since the export its last successful run took.

    A ranking its annotator changed since (annotation.revisions) keeps its id, and counts once however
    often it changed. Runs from before revisions were recorded count every revised ranking once more.
    Rankings training never reads do not count: those of gold items, and of annotators left out.
    """
    last = (
        TrainingRun.objects.filter(project=project, status=TrainingRun.Status.SUCCEEDED)
        .exclude(last_ranking_id=None)
        .order_by("-finished_at")
        .values_list("last_ranking_id", "last_revision_id")
        .first()
    )
    excluded = AnnotatorExclusion.objects.filter(project=project).values("annotator_id")
    rankings = Ranking.objects.filter(item__project=project, item__gold_order__isnull=True).exclude(
        annotator_id__in=excluded
    )
    if last is None:
        return rankings.count()
    last_ranking_id, last_revision_id = last
    revised = RankingRevision.objects.filter(ranking__in=rankings, ranking_id__lte=last_ranking_id)
    if last_revision_id is not None:
        revised = revised.filter(pk__gt=last_revision_id)
    return rankings.filter(pk__gt=last_ranking_id).count() + revised.values("ranking_id").distinct().count()


def training_runs_start_due() -> list[TrainingRun]:
    """Start a scheduled run for every active project with enough new rankings and no run in progress.

    A project whose run cannot start (a mistyped training argument, say) is logged and marked with a
    failed run that says why, and the schedule goes on to the next project.
    """
    started = []
    busy = TrainingRun.objects.filter(status__in=TrainingRun.ACTIVE_STATUSES).values("project_id")
    for project in Project.objects.filter(is_active=True).exclude(pk__in=busy):
        try:
            run = _scheduled_run_start(project=project)
        except DomainError as exc:
            log.warning("Scheduled training run of project %s not started: %s", project.pk, exc)
            _scheduled_run_refused(project=project, error=f"The scheduled run could not start: {exc}")
        except Exception as exc:
            log.exception("Scheduled training run of project %s not started", project.pk)
            _scheduled_run_refused(
                project=project, error=f"The scheduled run could not start: {type(exc).__name__}: {exc}"
            )
        else:
            if run is not None:
                started.append(run)
    return started


def _scheduled_run_start(*, project: Project) -> TrainingRun | None:
    """Queue the project's scheduled run if it has enough new rankings; None when it is not due or queued."""
    new = rankings_new_since_last_success(project=project)
    if new < max(1, project.retrain_min_new_rankings):
        return None
    try:
        run = training_run_create(project=project, trigger=TrainingRun.Trigger.SCHEDULE)
    except TrainingRunConflict:
        return None  # someone triggered it between the check and now
    except TrainingQueueUnavailable as exc:
        log.error("Could not queue the scheduled run of %s: %s", project, exc)
        return None  # training_run_create has already failed the run with this reason
    log.info("Scheduled training run for %s: %d new rankings", project, new)
    return run


def _scheduled_run_refused(*, project: Project, error: str) -> None:
    """Show staff why the schedule did not start a project's run: a failed run with the reason, once.

    The project has no field for it, and the runs page is where staff look for why a model did not
    retrain. A failed run changes nothing else (the schedule counts from the last successful run; only
    queued and running runs block the next one), and retrying it gives the same reason until the project
    is fixed. It is written again only when the reason changes or another run came after it, not on every
    beat. Best effort: a failure to record it must not stop the schedule either.
    """
    try:
        with transaction.atomic():
            # Two beat runs at once (a slow one and the next) write the mark once.
            Project.objects.select_for_update().get(pk=project.pk)
            latest = TrainingRun.objects.filter(project=project).order_by("-created_at", "-id").first()
            if (
                latest is not None
                and latest.trigger == TrainingRun.Trigger.SCHEDULE
                and latest.status == TrainingRun.Status.FAILED
                and latest.error == error
            ):
                return
            arguments = project.training_arguments
            TrainingRun.objects.create(
                project=project,
                trigger=TrainingRun.Trigger.SCHEDULE,
                status=TrainingRun.Status.FAILED,
                # As the project holds them, so that the run shows the arguments that were refused.
                arguments=arguments if isinstance(arguments, dict) else {},
                error=error,
                finished_at=timezone.now(),
            )
    except Exception:
        log.exception("Could not record why the scheduled run of project %s did not start", project.pk)


# -- A run's files ---------------------------------------------------------------------------------


def run_directory(run: TrainingRun) -> Path:
    """Where a run keeps its data files and the model it trains."""
    return Path(settings.MODEL_ROOT) / f"project-{run.project_id}" / f"run-{run.pk}"


def run_process_marker(run: TrainingRun) -> str:
    """Text found in the arguments of every engine process of this run, and of no other run."""
    return f"{run_directory(run)}{os.sep}"


def run_files_tidy(*, run: TrainingRun, directory: Path) -> None:
    """Delete what an ended run no longer needs, keeping the model of a registered version.

    The train/eval files are a split of the run's rankings snapshot, which is kept (the run points to it)
    and splits the same way again, so they go; so does the model of a run that registered no version.
    Tidying is best effort: a failure here must not hide how the run ended.
    """
    try:
        shutil.rmtree(directory / "data", ignore_errors=True)
        if not RewardModel.objects.filter(training_run=run).exists():
            shutil.rmtree(directory / "model", ignore_errors=True)
        with suppress(OSError):
            directory.rmdir()  # only when nothing is left in it
    except Exception:
        log.warning("Could not tidy the files of training run %s in %s", run.pk, directory, exc_info=True)
