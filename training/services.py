"""Writes for training: create, execute, cancel and reap runs; register, promote and activate models."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import subprocess
import time
from contextlib import AbstractContextManager, suppress
from functools import partial
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from annotation.exports import export_snapshot_create
from annotation.models import ExportSnapshot, Project, Ranking
from rewardlab.heartbeat import heartbeat_in_background

from .models import RewardModel, TrainingRun
from .runner import EngineProcess, describe_exit, engine_command, kill_processes_with_argument
from .selectors import reward_model_active

log = logging.getLogger(__name__)

# Engine options a project (training_arguments) or a run may set, and the flag each becomes.
ENGINE_OPTIONS: dict[str, tuple[type, str]] = {
    "base_model": (str, "--base-model"),
    "epochs": (int, "--epochs"),
    "lr": (float, "--lr"),
    "max_length": (int, "--max-length"),
    "batch_tokens": (int, "--batch-tokens"),
    "seed": (int, "--seed"),
}
# Options read by this side: which items form the project's fixed evaluation split.
RUN_OPTIONS: dict[str, type] = {"eval_fraction": float}
DEFAULT_EVAL_FRACTION = 0.1
LOSS_HISTORY_POINTS = 400
LOG_TAIL_LINES = 60


class TrainingError(Exception):
    """A training request that cannot be carried out, with a message meant for the person who asked."""


class TrainingRunConflict(TrainingError):
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


class TrainingQueueUnavailable(TrainingError):
    """The Celery broker could not be reached to queue the run."""


def training_arguments_validate(*, arguments: dict[str, Any]) -> dict[str, Any]:
    """Return the arguments with known names and the right types, or raise TrainingError."""
    if not isinstance(arguments, dict):
        raise TrainingError("Training arguments must be an object of option names to values.")
    known = {name: kind for name, (kind, _) in ENGINE_OPTIONS.items()} | RUN_OPTIONS
    clean: dict[str, Any] = {}
    for name, value in arguments.items():
        if name not in known:
            raise TrainingError(f"Unknown training argument {name!r}; known: {', '.join(sorted(known))}.")
        kind = known[name]
        try:
            clean[name] = kind(value)
        except (TypeError, ValueError) as exc:
            raise TrainingError(f"Training argument {name!r} must be a {kind.__name__}.") from exc
    if str(clean.get("base_model", "")).startswith("-"):
        raise TrainingError("base_model must be a hub id or a path, not an option.")
    fraction = clean.get("eval_fraction")
    if fraction is not None and not 0 < fraction < 1:
        raise TrainingError("eval_fraction must be between 0 and 1.")
    return clean


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
        if "training_run_one_active_per_project" not in str(exc):
            raise
        active = TrainingRun.objects.filter(project=project, status__in=TrainingRun.ACTIVE_STATUSES).first()
        raise TrainingRunConflict(active, project) from exc
    run.refresh_from_db()
    return run


def training_run_retry(
    *, run: TrainingRun, created_by: AbstractBaseUser | None = None, arguments: dict[str, Any] | None = None
) -> TrainingRun:
    """Queue a new run with the arguments of a failed or cancelled one, and any overrides."""
    if run.status not in (TrainingRun.Status.FAILED, TrainingRun.Status.CANCELLED):
        raise TrainingError(f"Run #{run.pk} is {run.status}; only failed or cancelled runs can be retried.")
    return training_run_create(
        project=run.project,
        trigger=run.trigger,
        created_by=created_by,
        arguments={
            **{k: v for k, v in run.arguments.items() if k in ENGINE_OPTIONS or k in RUN_OPTIONS},
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
            raise TrainingError(f"Run #{run.pk} has already finished ({run.status}).")
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
            _run_files_tidy(run=run, directory=run_directory(run))
    return reaped


def rankings_new_since_last_success(*, project: Project) -> int:
    """How many rankings the project gained since the export its last successful run trained on."""
    last = (
        TrainingRun.objects.filter(project=project, status=TrainingRun.Status.SUCCEEDED)
        .exclude(last_ranking_id=None)
        .order_by("-finished_at")
        .values_list("last_ranking_id", flat=True)
        .first()
    )
    rankings = Ranking.objects.filter(item__project=project)
    if last is not None:
        rankings = rankings.filter(pk__gt=last)
    return rankings.count()


def training_runs_start_due() -> list[TrainingRun]:
    """Start a scheduled run for every active project with enough new rankings and no run in progress."""
    started = []
    busy = TrainingRun.objects.filter(status__in=TrainingRun.ACTIVE_STATUSES).values("project_id")
    for project in Project.objects.filter(is_active=True).exclude(pk__in=busy):
        new = rankings_new_since_last_success(project=project)
        if new < max(1, project.retrain_min_new_rankings):
            continue
        try:
            started.append(training_run_create(project=project, trigger=TrainingRun.Trigger.SCHEDULE))
        except TrainingRunConflict:
            continue  # someone triggered it between the check and now
        except TrainingQueueUnavailable as exc:
            log.error("Could not queue the scheduled run of %s: %s", project, exc)
            continue
        log.info("Scheduled training run for %s: %d new rankings", project, new)
    return started


# -- Executing a run (in the training worker) ------------------------------------------------------


def run_directory(run: TrainingRun) -> Path:
    """Where a run keeps its data files and the model it trains."""
    return Path(settings.MODEL_ROOT) / f"project-{run.project_id}" / f"run-{run.pk}"


def run_process_marker(run: TrainingRun) -> str:
    """Text found in the arguments of every engine process of this run, and of no other run."""
    return f"{run_directory(run)}{os.sep}"


def item_in_evaluation_split(*, project_id: int, item_id: int, fraction: float) -> bool:
    """The project's fixed evaluation split: an item is in it or not for good, whatever else changes."""
    digest = hashlib.sha256(f"rewardlab-eval:{project_id}:{item_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def _rankings_snapshot(*, project: Project) -> ExportSnapshot:
    """A fresh `rankings` export of the project, written by the exports service."""
    snapshot = export_snapshot_create(project=project, format=ExportSnapshot.Format.RANKINGS, force=True)
    if snapshot is None:
        raise TrainingError("The exports service wrote no rankings snapshot.")
    return snapshot


def _training_files_write(
    *, run: TrainingRun, snapshot: ExportSnapshot, directory: Path
) -> tuple[Path, Path]:
    """Split the snapshot's lines into train.jsonl and eval.jsonl by the project's fixed evaluation split.

    Each line is copied as the exports service wrote it: the engine reads rankings exports as they are.
    """
    fraction = run.arguments.get("eval_fraction", DEFAULT_EVAL_FRACTION)
    directory.mkdir(parents=True, exist_ok=True)
    train_path, eval_path = directory / "train.jsonl", directory / "eval.jsonl"
    counts = {"train": 0, "eval": 0}
    with snapshot.file.open("rb") as rows, train_path.open("wb") as train, eval_path.open("wb") as held_out:
        for line in rows:
            if not line.strip():
                continue
            item_id = int(json.loads(line)["item_id"])
            held = item_in_evaluation_split(project_id=run.project_id, item_id=item_id, fraction=fraction)
            (held_out if held else train).write(line if line.endswith(b"\n") else line + b"\n")
            counts["eval" if held else "train"] += 1
    run.train_row_count, run.eval_row_count = counts["train"], counts["eval"]
    return train_path, eval_path


def _engine_arguments(arguments: dict[str, Any]) -> list[str]:
    flags = []
    for name, (_, flag) in ENGINE_OPTIONS.items():
        if name in arguments:
            flags += [flag, str(arguments[name])]
    return flags


def _thin(points: list[list[float]], limit: int) -> list[list[float]]:
    """Keep every other point once a history passes `limit`, so long runs stay cheap to store and plot."""
    if len(points) <= limit:
        return points
    return points[::2]


class _RunProgress:
    """What the engine has reported so far, flushed to the run's row at most once per heartbeat."""

    def __init__(self, run: TrainingRun):
        self.run = run
        self.result: dict[str, Any] | None = None
        self.error = ""

    def take(self, event: dict[str, Any]) -> None:
        run = self.run
        kind = event.get("event")
        if kind == "progress":
            run.step = int(event.get("step") or 0)
            run.total_steps = max(int(event.get("total_steps") or 0), run.step)
            run.epoch = float(event.get("epoch") or 0)
            if event.get("loss") is not None:
                run.loss_history = _thin(
                    [*run.loss_history, [run.step, float(event["loss"])]], LOSS_HISTORY_POINTS
                )
        elif kind == "eval":
            run.eval_metrics = {k: v for k, v in event.items() if k != "event"}
        elif kind == "error":
            self.error = str(event.get("error") or "")
        elif kind == "result":
            self.result = {k: v for k, v in event.items() if k != "event"}
            run.result_metrics = self.result
            if run.total_steps:
                run.step = run.total_steps


def _heartbeat_in_background(*, run_id: int) -> AbstractContextManager[None]:
    """Keep the run's heartbeat fresh from a thread while this one does long work without engine output."""
    return heartbeat_in_background(
        rows=TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.RUNNING),
        every_seconds=settings.TRAINING_HEARTBEAT_SECONDS,
    )


def _run_save(run: TrainingRun, engine: EngineProcess | None, **extra) -> bool:
    """Write progress if the run is still running; False when someone else finished it (cancel, reaper)."""
    if engine is not None:
        run.log_tail = "\n".join(list(engine.log)[-LOG_TAIL_LINES:])
    run.heartbeat_at = timezone.now()
    fields = {
        "step": run.step,
        "total_steps": run.total_steps,
        "epoch": run.epoch,
        "loss_history": run.loss_history,
        "eval_metrics": run.eval_metrics,
        "result_metrics": run.result_metrics,
        "log_tail": run.log_tail,
        "heartbeat_at": run.heartbeat_at,
        "train_row_count": run.train_row_count,
        "eval_row_count": run.eval_row_count,
        **extra,
    }
    return bool(TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.RUNNING).update(**fields))


def _run_finish(
    run: TrainingRun, status: str, *, error: str = "", engine: EngineProcess | None = None
) -> None:
    run.status, run.error, run.finished_at = status, error, timezone.now()
    _run_save(run, engine, status=status, error=error, finished_at=run.finished_at)


def training_run_execute(*, run_id: int, worker_hostname: str = "") -> TrainingRun | None:
    """Claim a queued run, export, train in a child process group, then register and maybe promote the model.

    Returns None when the run is no longer queued (cancelled before it started, or a redelivered message).
    """
    now = timezone.now()
    claimed = TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.QUEUED).update(
        status=TrainingRun.Status.RUNNING,
        started_at=now,
        heartbeat_at=now,
        worker_hostname=worker_hostname or socket.gethostname(),
    )
    if not claimed:
        log.info("Training run %s is not queued any more; nothing to do.", run_id)
        return None
    run = TrainingRun.objects.select_related("project").get(pk=run_id)
    engine: EngineProcess | None = None
    directory = run_directory(run)
    try:
        # Read before the export: a ranking that lands in between is counted again next time, never missed.
        run.last_ranking_id = Ranking.objects.filter(item__project=run.project).aggregate(m=Max("pk"))["m"]
        with _heartbeat_in_background(run_id=run.pk):
            snapshot = _rankings_snapshot(project=run.project)
            run.export_snapshot = snapshot
            train_path, eval_path = _training_files_write(
                run=run, snapshot=snapshot, directory=directory / "data"
            )
        if not _run_save(run, None, export_snapshot=snapshot, last_ranking_id=run.last_ranking_id):
            return run  # finished by someone else meanwhile (the reaper)
        if TrainingRun.objects.filter(pk=run.pk).exclude(cancel_requested_at=None).exists():
            _run_finish(run, TrainingRun.Status.CANCELLED)
            return run
        if not run.train_row_count:
            _run_finish(run, TrainingRun.Status.FAILED, error="The project has no rankings to train on.")
            return run
        output = directory / "model"
        arguments = ["--data", str(train_path), "--output", str(output), *_engine_arguments(run.arguments)]
        # Always our split, never the engine's own: with no evaluation rows, evaluate on nothing.
        arguments += ["--eval-data", str(eval_path)] if run.eval_row_count else ["--eval-fraction", "0"]
        engine = EngineProcess(
            engine_command(subcommand="train", arguments=arguments, gpus=settings.TRAINING_GPUS),
            cwd=settings.BASE_DIR,
        )
        pid = engine.start()
        _run_save(run, engine, process_id=pid)
        progress = _RunProgress(run)
        cancelled = False
        last_flush = float("-inf")
        for output_item in engine.outputs(tick_seconds=settings.TRAINING_HEARTBEAT_SECONDS):
            if output_item.kind == "event":
                progress.take(output_item.event)
            if time.monotonic() - last_flush < settings.TRAINING_HEARTBEAT_SECONDS:
                continue
            last_flush = time.monotonic()
            still_running = _run_save(run, engine)
            cancel_requested = (
                TrainingRun.objects.filter(pk=run.pk).exclude(cancel_requested_at=None).exists()
            )
            if cancel_requested or not still_running:
                cancelled = True
                engine.terminate(marker=run_process_marker(run))
                break
        returncode = engine.wait()
        if cancelled:
            run.refresh_from_db(fields=["status"])
            if run.status == TrainingRun.Status.RUNNING:
                _run_finish(run, TrainingRun.Status.CANCELLED, engine=engine)
            return run
        if returncode != 0 or progress.result is None:
            error = _engine_error(engine, returncode, reported=progress.error)
            _run_finish(run, TrainingRun.Status.FAILED, error=error, engine=engine)
            return run
        with _heartbeat_in_background(run_id=run.pk):  # evaluating the active model takes a while too
            reward_model_register(
                run=run, artifact_path=output, eval_path=eval_path if run.eval_row_count else None
            )
        _run_finish(run, TrainingRun.Status.SUCCEEDED, engine=engine)
        return run
    except Exception as exc:
        log.exception("Training run %s failed", run_id)
        if engine is not None and engine.returncode is None:
            engine.terminate(marker=run_process_marker(run))
        _run_finish(run, TrainingRun.Status.FAILED, error=f"{type(exc).__name__}: {exc}", engine=engine)
        return run
    finally:
        # Not while the engine may still be writing (the worker itself is being stopped, say).
        if engine is None or engine.process is None or engine.process.poll() is not None:
            _run_files_tidy(run=run, directory=directory)


def _run_files_tidy(*, run: TrainingRun, directory: Path) -> None:
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


def _engine_error(engine: EngineProcess, returncode: int, *, reported: str = "") -> str:
    """The engine's exit, its error event (the exception when it raised) and the last lines it wrote."""
    lines = list(engine.log)
    headline = f"The training engine {describe_exit(returncode)}"
    if returncode == 0:
        headline += " without reporting a result"
    detail = reported or (lines[-1] if lines else "")
    tail = "\n".join(lines[-20:])
    return f"{headline}: {detail}\n\n{tail}".strip() if detail else headline + "."


def reward_model_evaluate(*, artifact_path: str | Path, data_path: str | Path) -> dict[str, Any]:
    """Pairwise accuracy of a saved model on a data file, through the engine's `evaluate` command."""
    command = engine_command(
        subcommand="evaluate", arguments=["--model", str(artifact_path), "--data", str(data_path)]
    )
    completed = subprocess.run(command, capture_output=True, text=True, cwd=settings.BASE_DIR, check=False)
    if completed.returncode != 0:
        raise TrainingError(
            f"evaluate {describe_exit(completed.returncode)}: {completed.stderr.strip()[-2000:]}"
        )
    for line in reversed(completed.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise TrainingError("evaluate printed no result.")


def reward_model_register(*, run: TrainingRun, artifact_path: Path, eval_path: Path | None) -> RewardModel:
    """Record the run's model as the project's next version and promote it if it is at least as good."""
    result = run.result_metrics or {}
    held_out = result.get("eval") or {}
    accuracy = held_out.get("pairwise_accuracy") if held_out.get("pairs") else None
    active = reward_model_active(project=run.project)
    compared_accuracy = None
    reason = ""
    if active is not None:
        if eval_path is None or accuracy is None:
            reason = "No evaluation pairs to compare with the active model; activate it by hand if wanted."
        else:
            try:
                compared_accuracy = reward_model_evaluate(
                    artifact_path=active.artifact_path, data_path=eval_path
                )["pairwise_accuracy"]
            except (TrainingError, KeyError, OSError) as exc:
                log.warning("Could not evaluate active model %s: %s", active, exc)
            if compared_accuracy is not None and accuracy < compared_accuracy:
                reason = (
                    f"Pairwise accuracy {accuracy:.3f} is below the active v{active.version}'s "
                    f"{compared_accuracy:.3f} on the same evaluation split."
                )
    with transaction.atomic():
        project = Project.objects.select_for_update().get(pk=run.project_id)
        version = (RewardModel.objects.filter(project=project).aggregate(m=Max("version"))["m"] or 0) + 1
        reward_model = RewardModel.objects.create(
            project=project,
            version=version,
            training_run=run,
            artifact_path=str(artifact_path),
            base_model=str(run.arguments.get("base_model", "")),
            metrics=result,
            pairwise_accuracy=accuracy,
            eval_pairs=int(held_out.get("pairs") or 0),
            compared_with=active,
            compared_accuracy=compared_accuracy,
            not_active_reason=reason,
        )
        if reason:
            return reward_model
        current = reward_model_active(project=project)
        if current != active:
            reward_model.not_active_reason = (
                "The active model changed while this one was compared; activate by hand."
            )
            reward_model.save(update_fields=["not_active_reason"])
            return reward_model
        return reward_model_activate(reward_model=reward_model)


def reward_model_activate(*, reward_model: RewardModel) -> RewardModel:
    """Make this version the project's active model, atomically switching from the previous one."""
    with transaction.atomic():
        # Lock the project so that two activations of the same project take turns.
        Project.objects.select_for_update().get(pk=reward_model.project_id)
        RewardModel.objects.filter(project_id=reward_model.project_id, is_active=True).exclude(
            pk=reward_model.pk
        ).update(is_active=False)
        reward_model.is_active = True
        reward_model.activated_at = timezone.now()
        reward_model.not_active_reason = ""
        reward_model.save(update_fields=["is_active", "activated_at", "not_active_reason"])
    return reward_model
