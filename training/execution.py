"""What the training worker does with a run: claim it, export and split its rankings, run the engine in a
child process, record its progress and heartbeat, then register the model it trained and tidy up.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import socket
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from annotation.exports import export_snapshot_create, export_snapshot_latest
from annotation.models import ExportSnapshot, Item, Project, Ranking, RankingRevision
from common.heartbeat import heartbeat_in_background
from preferences.export_rows import compact_json

from .models import TrainingRun
from .registry import reward_model_register
from .runner import EngineProcess, describe_exit, engine_command
from .runs import ENGINE_FLAGS, TrainingError, run_directory, run_files_tidy, run_process_marker
from .selectors import reward_model_active
from .suites import suite_arguments, suite_files_copy

log = logging.getLogger(__name__)

DEFAULT_EVAL_FRACTION = 0.1
LOSS_HISTORY_POINTS = 400
LOG_TAIL_LINES = 60


def item_in_evaluation_split(*, project_id: int, item_id: int, fraction: float) -> bool:
    """The project's fixed evaluation split: an item is in it or not for good, whatever else changes."""
    digest = hashlib.sha256(f"rewardlab-eval:{project_id}:{item_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def _rankings_snapshot(*, project: Project) -> ExportSnapshot:
    """The project's `rankings` export as of now: the latest snapshot when the data is unchanged since it.

    Runs retried, or started with new arguments on the same data, share one snapshot per digest instead
    of writing the same file again each time.
    """
    rankings = ExportSnapshot.Format.RANKINGS
    snapshot = export_snapshot_create(project=project, format=rankings)
    if snapshot is None:
        latest = export_snapshot_latest(project=project, format=rankings)
        if latest is not None and latest.file and latest.file.storage.exists(latest.file.name):
            return latest
        snapshot = export_snapshot_create(project=project, format=rankings, force=True)
    if snapshot is None:
        raise TrainingError("The exports service wrote no rankings snapshot.")
    return snapshot


def _training_files_write(
    *, run: TrainingRun, snapshot: ExportSnapshot, directory: Path
) -> tuple[Path, Path]:
    """Split the snapshot's lines into train.jsonl and eval.jsonl by the project's fixed evaluation split.

    Each line is copied as the exports service wrote it: the engine reads rankings exports as they are.
    Evaluation rows of imported items also get `import_batch`, which the figures are broken down by.
    """
    fraction = run.arguments.get("eval_fraction", DEFAULT_EVAL_FRACTION)
    directory.mkdir(parents=True, exist_ok=True)
    train_path, eval_path = directory / "train.jsonl", directory / "eval.jsonl"
    train_rows = 0
    held_out: list[tuple[int, bytes]] = []
    with snapshot.file.open("rb") as rows, train_path.open("wb") as train:
        for line in rows:
            if not line.strip():
                continue
            item_id = int(json.loads(line)["item_id"])
            if item_in_evaluation_split(project_id=run.project_id, item_id=item_id, fraction=fraction):
                held_out.append((item_id, line))
            else:
                train.write(line if line.endswith(b"\n") else line + b"\n")
                train_rows += 1
    batches = _import_batch_names(item_ids={item_id for item_id, _ in held_out})
    with eval_path.open("wb") as out:
        for item_id, line in held_out:
            if item_id in batches:
                line = compact_json({**json.loads(line), "import_batch": batches[item_id]}).encode()
            out.write(line if line.endswith(b"\n") else line + b"\n")
    run.train_row_count, run.eval_row_count = train_rows, len(held_out)
    return train_path, eval_path


def _import_batch_names(*, item_ids: set[int]) -> dict[int, str]:
    """Each imported item's batch as people know it ("#3 oasst.jsonl"), by item id."""
    names: dict[int, str] = {}
    ids = sorted(item_ids)
    for start in range(0, len(ids), 10_000):
        imported = Item.objects.filter(pk__in=ids[start : start + 10_000], import_batch__isnull=False)
        rows = imported.values_list("pk", "import_batch_id", "import_batch__file_name")
        names.update((pk, f"#{batch_id} {file_name}") for pk, batch_id, file_name in rows)
    return names


def _engine_arguments(arguments: dict[str, Any]) -> list[str]:
    flags = []
    for name, flag in ENGINE_FLAGS.items():
        if name in arguments:
            flags += [flag, str(arguments[name])]
    return flags


def _finite(value: Any) -> Any:
    """The value with every NaN and infinity in it as None: JSON (and so PostgreSQL's jsonb) has neither."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def _warm_start_arguments(run: TrainingRun) -> list[str]:
    """`--init-from` the project's active version when the run asks to continue from it and there is one."""
    if not run.arguments.get("init_from_active"):
        return []
    active = reward_model_active(project=run.project_id)
    if active is None:
        log.info(
            "Run %s starts from its base model: project %s has no active version.", run.pk, run.project_id
        )
        return []
    return ["--init-from", active.artifact_path]


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
        # Why the run must fail even if the engine goes on: a loss that is not a number. The engine stops
        # at one itself (TrainingDiverged); this side never registers a model trained through one either.
        self.diverged = ""

    def take(self, event: dict[str, Any]) -> None:
        run = self.run
        kind = event.get("event")
        loss = event.get("loss")
        if kind == "progress" and isinstance(loss, float) and not math.isfinite(loss) and not self.diverged:
            self.diverged = f"The training loss became {loss} at step {event.get('step')}."
        event = _finite(event)
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
        # PostgreSQL's text holds no NUL, which a child's output may carry.
        run.log_tail = "\n".join(list(engine.log)[-LOG_TAIL_LINES:]).replace("\x00", "\ufffd")
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
    try:
        with transaction.atomic():
            _run_save(run, engine, status=status, error=error, finished_at=run.finished_at)
    except Exception:
        # How the run ended is written whatever progress could not be: a run left running would be failed
        # by the reaper later, blaming a dead worker, and the cause would be lost.
        log.exception("Could not save the progress of training run %s; saving how it ended", run.pk)
        TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.RUNNING).update(
            status=status, error=error.replace("\x00", "\ufffd"), finished_at=run.finished_at
        )


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
        # Read before the export: a ranking that lands (or is revised) in between is counted again next
        # time, never missed.
        run.last_ranking_id = Ranking.objects.filter(item__project=run.project).aggregate(m=Max("pk"))["m"]
        run.last_revision_id = RankingRevision.objects.filter(ranking__item__project=run.project).aggregate(
            m=Max("pk")
        )["m"]
        with _heartbeat_in_background(run_id=run.pk):
            snapshot = _rankings_snapshot(project=run.project)
            run.export_snapshot = snapshot
            train_path, eval_path = _training_files_write(
                run=run, snapshot=snapshot, directory=directory / "data"
            )
            suites = suite_files_copy(project=run.project, directory=directory / "data" / "suites")
        marks = {"last_ranking_id": run.last_ranking_id, "last_revision_id": run.last_revision_id}
        if not _run_save(run, None, export_snapshot=snapshot, **marks):
            return run  # finished by someone else meanwhile (the reaper)
        if TrainingRun.objects.filter(pk=run.pk).exclude(cancel_requested_at=None).exists():
            _run_finish(run, TrainingRun.Status.CANCELLED)
            return run
        if not run.train_row_count:
            _run_finish(run, TrainingRun.Status.FAILED, error="The project has no rankings to train on.")
            return run
        output = directory / "model"
        arguments = ["--data", str(train_path), "--output", str(output), *_engine_arguments(run.arguments)]
        arguments += _warm_start_arguments(run)
        # Always our split, never the engine's own: with no evaluation rows, evaluate on nothing.
        arguments += ["--eval-data", str(eval_path)] if run.eval_row_count else ["--eval-fraction", "0"]
        arguments += suite_arguments(suites)
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
        failure = ""
        if returncode != 0 or progress.result is None:
            failure = _engine_error(engine, returncode, reported=progress.error)
        elif progress.diverged:
            failure = f"{progress.diverged} No model was registered; lower the learning rate."
        if failure:
            _run_finish(run, TrainingRun.Status.FAILED, error=failure, engine=engine)
            return run
        with _heartbeat_in_background(run_id=run.pk):  # evaluating the active model takes a while too
            reward_model_register(
                run=run,
                artifact_path=output,
                eval_path=eval_path if run.eval_row_count else None,
                suites=suites,
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
            run_files_tidy(run=run, directory=directory)


def _engine_error(engine: EngineProcess, returncode: int, *, reported: str = "") -> str:
    """The engine's exit, its error event (the exception when it raised) and the last lines it wrote."""
    lines = list(engine.log)
    headline = f"The training engine {describe_exit(returncode)}"
    if returncode == 0:
        headline += " without reporting a result"
    detail = reported or (lines[-1] if lines else "")
    tail = "\n".join(lines[-20:])
    return f"{headline}: {detail}\n\n{tail}".strip() if detail else headline + "."
