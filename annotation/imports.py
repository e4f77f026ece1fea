"""Writing imported files into a project: all or nothing, and never the same thing twice.

The reading lives in `preferences.readers`; this module turns its records into rows. Items,
answers and imported rankings are matched on their external ids (and rankings on
`(item, external_annotator)`), so re-importing a file adds nothing, and a file that overlaps an
earlier one adds only what is new. Rows that exist are never changed: an item keeps its
conversation, an imported ranking keeps its order.

A large file would hold a web worker for minutes (an 85 MB Open-Assistant file takes about one), so
the API and the admin hand those to an `ImportJob` (`import_upload_or_queue`): the upload is stored,
and a Celery worker imports it with the same `import_file`, as all or nothing as ever. The worker keeps
the job's heartbeat fresh while it runs; a beat task fails jobs whose heartbeat went stale, as a worker
that dies mid-import cannot say so itself, and jobs that no worker took for too long.
"""

from __future__ import annotations

import itertools
import logging
import os
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import NoReturn

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db import reset_queries, transaction
from django.db.models import Max, Q
from django.utils import timezone

from common.errors import Conflict, Unavailable
from common.heartbeat import heartbeat_in_background
from preferences.readers import FORMATS, ImportFailed, ReadLimits, RowFile, file_format, read_items
from preferences.records import ItemRecord

from .locks import PROJECT_IMPORT, advisory_xact_lock
from .models import Answer, ImportBatch, ImportJob, Item, Project, Ranking
from .signals import project_deleting

__all__ = [
    "FORMATS",
    "ImportFailed",
    "ImportQueueUnavailable",
    "import_file",
    "import_job_create",
    "import_job_run",
    "import_jobs_reap_stale",
    "import_upload",
    "import_upload_or_queue",
    "project_delete",
]

log = logging.getLogger(__name__)

# Records written per round of queries: memory stays flat however large the file is.
CHUNK_SIZE = 500


def import_file(
    *,
    path: Path,
    project: Project,
    format: str = "auto",
    user: AbstractBaseUser | None = None,
    file_name: str | None = None,
    progress: bool = False,
    gold: bool = False,
) -> ImportBatch:
    """Import a .jsonl / .jsonl.gz file into a project in one transaction; a bad line raises ImportFailed.

    With `gold`, the file's items are gold items (annotation.gold): each row's ranking, which must name
    every answer of its item, becomes the item's known ranking, and no Ranking rows are written.
    """
    source = RowFile(Path(path), name=file_name or Path(path).name, progress=progress, limits=read_limits())
    _check_format(format)
    format = file_format(source, format)
    with transaction.atomic():
        # Two imports into one project would race on the external ids: they take turns, on an advisory
        # lock rather than a row lock on the project, which would also hold up every insert pointing at
        # the project (its foreign-key check) for the whole import: another import queued, a snapshot.
        advisory_xact_lock(namespace=PROJECT_IMPORT, key=project.pk)
        batch = ImportBatch.objects.create(
            project=project, file_name=source.name[:500], format=format, created_by=user, gold=gold
        )
        writer = _ChunkWriter(batch=batch, source=source)
        records = read_items(source, format)
        while chunk := list(itertools.islice(records, CHUNK_SIZE)):
            writer.write(chunk)
            if settings.DEBUG:
                # DEBUG keeps the last 9000 queries' SQL; with bulk inserts of long texts that is gigabytes.
                reset_queries()
        if not source.rows_read:
            source.fail(1, "the file holds no rows")  # rolls the empty batch back
        batch.lines_read = source.lines_read
        batch.sha256 = source.sha256
        batch.save(
            update_fields=[
                "lines_read",
                "sha256",
                "items_created",
                "answers_created",
                "rankings_created",
                "gold_marked",
            ]
        )
    return batch


def read_limits() -> ReadLimits:
    """What one row of an imported file may hold, from settings (IMPORT_MAX_*, ITEM_MAX_ANSWERS)."""
    return ReadLimits(
        line_bytes=settings.IMPORT_MAX_LINE_BYTES,
        depth=settings.IMPORT_MAX_JSON_DEPTH,
        turns=settings.IMPORT_MAX_TURNS,
        turn_chars=settings.IMPORT_MAX_TURN_CHARS,
        answers=settings.ITEM_MAX_ANSWERS,
        answer_chars=settings.IMPORT_MAX_ANSWER_CHARS,
        parquet_row_group_bytes=settings.IMPORT_MAX_PARQUET_ROW_GROUP_BYTES,
    )


def _check_format(format: str) -> None:
    if format != "auto" and format not in FORMATS:
        raise ValueError(f"unknown import format {format!r}; expected auto or one of {', '.join(FORMATS)}")


def import_upload(
    *,
    upload: UploadedFile,
    project: Project,
    format: str = "auto",
    user: AbstractBaseUser | None = None,
    gold: bool = False,
) -> ImportBatch:
    """Import an uploaded file (admin or API), streaming it from disk rather than from memory."""
    options = {"project": project, "format": format, "user": user, "file_name": upload.name, "gold": gold}
    if hasattr(upload, "temporary_file_path"):
        return import_file(path=Path(upload.temporary_file_path()), **options)
    # Small uploads are held in memory by Django; write them out so one code path reads every file.
    with _temporary_copy(upload.chunks()) as path:
        return import_file(path=path, **options)


def import_upload_or_queue(
    *,
    upload: UploadedFile,
    project: Project,
    format: str = "auto",
    user: AbstractBaseUser | None = None,
    background: bool = False,
    gold: bool = False,
) -> ImportBatch | ImportJob:
    """Import a web upload now while it is small (IMPORT_INLINE_MAX_BYTES), else, or when asked, queue it.

    Raises ImportFailed for a bad file imported now, ImportQueueUnavailable when the broker is down.
    """
    if background or upload.size > settings.IMPORT_INLINE_MAX_BYTES:
        return import_job_create(upload=upload, project=project, format=format, user=user, gold=gold)
    return import_upload(upload=upload, project=project, format=format, user=user, gold=gold)


class ImportQueueUnavailable(Unavailable):
    """The job could not be handed to Celery; it is marked failed and its upload deleted."""


def import_job_create(
    *,
    upload: UploadedFile,
    project: Project,
    format: str = "auto",
    user: AbstractBaseUser | None = None,
    gold: bool = False,
) -> ImportJob:
    """Store an upload under imports/ and queue its import on a Celery worker; raise if the broker is down."""
    _check_format(format)
    job = ImportJob(
        project=project,
        file_name=upload.name[:500],
        format=format,
        gold=gold,
        created_by=user if user is not None and user.is_authenticated else None,
    )
    job.upload.save(os.path.basename(upload.name), upload, save=False)
    try:
        with transaction.atomic():
            job.save()
            # Queue only once the row is committed, so that the worker always finds it.
            transaction.on_commit(partial(_import_job_enqueue, job_id=job.pk))
    except ImportQueueUnavailable:
        raise
    except BaseException:
        default_storage.delete(job.upload.name)
        raise
    job.refresh_from_db()
    return job


def import_job_run(*, job: ImportJob) -> ImportJob:
    """Run a queued job: claim it, import its stored file all or nothing, record the outcome, drop the file.

    A job that is no longer queued (a redelivered message, or a second worker) is left as it is.
    """
    now = timezone.now()
    claimed = ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.QUEUED).update(
        status=ImportJob.Status.RUNNING, started_at=now, heartbeat_at=now
    )
    job.refresh_from_db()
    if not claimed:
        return job
    # Several beats per stale window, so that one slow or failed beat does not get a live job reaped.
    heartbeat = heartbeat_in_background(
        rows=ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.RUNNING),
        every_seconds=settings.IMPORT_JOB_STALE_SECONDS / 12,
    )
    try:
        with heartbeat, _stored_file(job.upload.name) as path:
            batch = import_file(
                path=path,
                project=job.project,
                format=job.format,
                user=job.created_by,
                file_name=job.file_name,
                gold=job.gold,
            )
    except ImportFailed as exc:
        job.status, job.error = ImportJob.Status.FAILED, f"{exc} — nothing was imported."
    except Exception as exc:
        # Anything else is a bug or an outage, not the file's fault; the job must still say it stopped.
        log.exception("Import job %s failed", job.pk)
        job.status, job.error = (
            ImportJob.Status.FAILED,
            f"The import stopped unexpectedly ({exc!r}); nothing was imported.",
        )
    else:
        job.status, job.batch = ImportJob.Status.SUCCEEDED, batch
    finally:
        default_storage.delete(job.upload.name)
    job.upload = ""
    job.finished_at = timezone.now()
    # Saved whatever the row says now: should the reaper have failed a job that was only slow, the
    # import's own outcome is the truth (a batch that committed must not read "nothing was imported").
    job.save(update_fields=["status", "error", "batch", "upload", "finished_at"])
    return job


def import_jobs_reap_stale(*, now: datetime | None = None) -> list[int]:
    """Fail running jobs whose worker stopped sending heartbeats, and jobs no worker took; return their ids.

    Their uploads are deleted: neither left anything of the file in the database.
    """
    now = now or timezone.now()
    dead = Q(
        status=ImportJob.Status.RUNNING,
        heartbeat_at__lt=now - timedelta(seconds=settings.IMPORT_JOB_STALE_SECONDS),
    )
    untaken = Q(
        status=ImportJob.Status.QUEUED,
        created_at__lt=now - timedelta(seconds=settings.IMPORT_JOB_QUEUE_TIMEOUT_SECONDS),
    )
    reaped = []
    fields = ("pk", "status", "upload", "heartbeat_at", "created_at")
    for job in ImportJob.objects.filter(dead | untaken).only(*fields):
        if job.status == ImportJob.Status.RUNNING:
            message = (
                "The worker stopped during the import (no heartbeat since "
                f"{job.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC): nothing was imported. Upload the file again."
            )
        else:
            message = (
                f"No worker took the import since it was queued ({job.created_at:%Y-%m-%d %H:%M:%S} UTC): "
                "its message was lost, or the default queue is that far behind. Nothing was imported. "
                "Upload the file again."
            )
        updated = ImportJob.objects.filter(pk=job.pk, status=job.status).update(
            status=ImportJob.Status.FAILED, error=message, upload="", finished_at=now
        )
        if updated:
            if job.upload.name:
                default_storage.delete(job.upload.name)
            log.warning("Reaped import job %s: %s", job.pk, message)
            reaped.append(job.pk)
    return reaped


class ProjectImporting(Conflict):
    """The project has an import job that is queued or running, so it cannot be deleted yet."""


def project_delete(*, project: Project) -> None:
    """Delete a project with all its data, unless one of its import jobs is still queued or running.

    Such a job's upload is deleted only by the job (or the reaper), and its worker would find the rows gone.
    The layers above may refuse too (`signals.project_deleting`: training, while a run is unfinished).
    """
    with transaction.atomic():
        # Taken before the check: a job queued meanwhile commits first (and is seen) or fails its insert.
        Project.objects.select_for_update().get(pk=project.pk)
        unfinished = ImportJob.objects.filter(project=project).exclude(status__in=ImportJob.FINISHED_STATUSES)
        if unfinished.exists():
            raise ProjectImporting(
                f"Project “{project}” has an import job that is still queued or running; "
                "delete it once the job has finished."
            )
        project_deleting.send(sender=Project, project=project)
        project.delete()


def _import_job_enqueue(*, job_id: int) -> None:
    from .tasks import run_import_job

    try:
        run_import_job.apply_async(args=[job_id])
    except Exception as exc:  # kombu raises OperationalError, redis-py its own errors: all mean "not queued"
        message = f"Could not queue the import: the Celery broker is unreachable ({exc})."
        upload = ImportJob.objects.values_list("upload", flat=True).get(pk=job_id)
        failed = ImportJob.objects.filter(pk=job_id, status=ImportJob.Status.QUEUED).update(
            status=ImportJob.Status.FAILED, error=message, upload="", finished_at=timezone.now()
        )
        # Only once the job is ours to fail: a message that went out after all may have a worker on it.
        if failed and upload:
            default_storage.delete(upload)
        raise ImportQueueUnavailable(message) from exc


@contextmanager
def _stored_file(name: str) -> Iterator[Path]:
    """A local path to a file in default_storage: its own where it is on this disk, else a temporary copy."""
    try:
        local = Path(default_storage.path(name))
    except NotImplementedError:  # remote storage (S3 and the like) has no local path
        local = None
    # InMemoryStorage, for one, answers a path where nothing is.
    if local is not None and local.is_file():
        yield local
        return
    with default_storage.open(name, "rb") as stored, _temporary_copy(stored.chunks()) as path:
        yield path


@contextmanager
def _temporary_copy(chunks: Iterable[bytes]) -> Iterator[Path]:
    """Write the chunks to a temporary file, deleted on leaving."""
    handle, name = tempfile.mkstemp(prefix="rewardlab-import-", suffix=".jsonl")
    try:
        with os.fdopen(handle, "wb") as out:
            for piece in chunks:
                out.write(piece)
        yield Path(name)
    finally:
        os.unlink(name)


class _ChunkWriter:
    """Writes records a chunk at a time with a handful of queries, counting what it created.

    The external-id lookups repeat the unique indexes' `external_id <> ''` condition: without it
    PostgreSQL cannot use those partial indexes for an IN list of more than 100 values, and each
    chunk would scan every answer of the project.
    """

    def __init__(self, *, batch: ImportBatch, source: RowFile) -> None:
        self.batch = batch
        self.project = batch.project
        self.source = source
        # Gold imports: the known ranking each item got from this file, and the line it came from.
        self.gold_orders: dict[int, list[list[int]]] = {}
        self.gold_lines: dict[int, int] = {}

    def write(self, records: list[ItemRecord]) -> None:
        item_ids, existing_item_ids = self._items(records)
        answer_ids = self._answers(records, item_ids, existing_item_ids)
        if self.batch.gold:
            self._gold(records, item_ids, answer_ids)
        else:
            self._rankings(records, item_ids, existing_item_ids, answer_ids)

    def _items(self, records: Iterable[ItemRecord]) -> tuple[dict[str, int], set[int]]:
        """Item pk by external id, creating the items not seen before; and the pks that already existed.

        An item that exists must have the record's conversation: the same key with another one is another
        item, which the file must not merge into it (the reader already refused that within the file).
        """
        wanted = {record.external_id for record in records}
        existing = {
            external_id: (pk, conversation, batch_id)
            for external_id, pk, conversation, batch_id in Item.objects.filter(
                project=self.project, external_id__in=wanted
            )
            .exclude(external_id="")
            .values_list("external_id", "pk", "conversation", "import_batch")
        }
        for record in records:
            if record.external_id in existing and existing[record.external_id][1] != record.conversation:
                self._fail_reused_key(record, existing[record.external_id][2])
        item_ids = {external_id: pk for external_id, (pk, _, _) in existing.items()}
        existing_item_ids = set(item_ids.values())
        new_items: dict[str, Item] = {}
        for record in records:
            if record.external_id not in item_ids and record.external_id not in new_items:
                new_items[record.external_id] = Item(
                    project=self.project,
                    external_id=record.external_id,
                    conversation=record.conversation,
                    import_batch=self.batch,
                )
        Item.objects.bulk_create(new_items.values(), batch_size=CHUNK_SIZE)
        item_ids.update({external_id: item.pk for external_id, item in new_items.items()})
        self.batch.items_created += len(new_items)
        return item_ids, existing_item_ids

    def _fail_reused_key(self, record: ItemRecord, batch_id: int | None) -> NoReturn:
        batch = ImportBatch.objects.filter(pk=batch_id).first() if batch_id is not None else None
        if batch is None:
            earlier = "already exists in this project"
        else:
            when = f"{batch.created_at:%Y-%m-%d %H:%M} UTC"
            earlier = f"was imported from {batch.file_name} on {when} (import batch {batch.pk})"
        self.source.fail(
            record.line,
            f"item {record.external_id} {earlier} with a different conversation; one id must name one "
            "conversation",
        )

    def _answers(
        self, records: list[ItemRecord], item_ids: dict[str, int], existing_item_ids: set[int]
    ) -> list[list[int]]:
        """Per record, the pks of its answers in its order, creating those not seen before."""
        wanted = {answer.external_id for record in records for answer in record.answers}
        known: dict[str, tuple[int, int]] = {
            external_id: (pk, item_id)
            for external_id, pk, item_id in Answer.objects.filter(
                project=self.project, external_id__in=wanted
            )
            .exclude(external_id="")
            .values_list("external_id", "pk", "item_id")
        }
        # New items start at position 0: only items that existed before this chunk need a query.
        next_position = dict(
            Answer.objects.filter(item_id__in=existing_item_ids)
            .values("item_id")
            .annotate(last=Max("position"))
            .values_list("item_id", "last")
        )
        next_position = {item_id: last + 1 for item_id, last in next_position.items()}
        new_answers: dict[str, Answer] = {}
        for record in records:
            item_id = item_ids[record.external_id]
            for answer in record.answers:
                if answer.external_id in known:
                    owner = known[answer.external_id][1]
                    if owner != item_id:
                        self.source.fail(
                            record.line,
                            f"answer {answer.external_id} already belongs to another item (id {owner}) "
                            "of this project",
                        )
                    continue
                position = next_position.get(item_id, 0)
                if position >= self.source.limits.answers:
                    # Rows of one item merge (pairs of one prompt, a later file): the limit is the item's.
                    self.source.fail(
                        record.line,
                        f"item {record.external_id} would have more answers than the limit of "
                        f"{self.source.limits.answers}",
                    )
                next_position[item_id] = position + 1
                new_answers[answer.external_id] = Answer(
                    item_id=item_id,
                    project=self.project,
                    position=position,
                    text=answer.text,
                    model_name=answer.model_name,
                    external_id=answer.external_id,
                )
                # Placeholder pk until bulk_create returns the real one below.
                known[answer.external_id] = (0, item_id)
        Answer.objects.bulk_create(new_answers.values(), batch_size=1000)
        known.update(
            {external_id: (answer.pk, answer.item_id) for external_id, answer in new_answers.items()}
        )
        self.batch.answers_created += len(new_answers)
        return [[known[answer.external_id][0] for answer in record.answers] for record in records]

    def _rankings(
        self,
        records: list[ItemRecord],
        item_ids: dict[str, int],
        existing_item_ids: set[int],
        answer_ids: list[list[int]],
    ) -> None:
        """Create the imported rankings this project does not hold yet; existing ones stay as they are."""
        # As for answers, items created by this chunk hold no rankings yet: only older ones need a query.
        taken = set(
            Ranking.objects.filter(item_id__in=existing_item_ids, source=Ranking.Source.IMPORT).values_list(
                "item_id", "external_annotator"
            )
        )
        new_rankings = []
        for record, pks in zip(records, answer_ids, strict=True):
            item_id = item_ids[record.external_id]
            for ranking in record.rankings:
                key = (item_id, ranking.external_annotator)
                if key in taken:
                    continue
                taken.add(key)
                new_rankings.append(
                    Ranking(
                        item_id=item_id,
                        source=Ranking.Source.IMPORT,
                        import_batch=self.batch,
                        external_annotator=ranking.external_annotator,
                        order=[[pks[index] for index in group] for group in ranking.order],
                        not_rankable=ranking.not_rankable,
                    )
                )
        Ranking.objects.bulk_create(new_rankings, batch_size=1000)
        self.batch.rankings_created += len(new_rankings)

    def _gold(self, records: list[ItemRecord], item_ids: dict[str, int], answer_ids: list[list[int]]) -> None:
        """Make each record's item gold, with the record's ranking of all its answers as the known ranking.

        An item that is gold already keeps its known ranking, and a row that contradicts it fails, as do two
        rows of one item that disagree: an import never changes what is there, it only adds.
        """
        chunk_items = set(item_ids[record.external_id] for record in records)
        answers_of: dict[int, set[int]] = defaultdict(set)
        for item_id, answer_id in Answer.objects.filter(item_id__in=chunk_items).values_list("item_id", "pk"):
            answers_of[item_id].add(answer_id)
        known = dict(
            Item.objects.filter(pk__in=chunk_items, gold_order__isnull=False).values_list("pk", "gold_order")
        )
        marked: dict[int, list[list[int]]] = {}
        for record, pks in zip(records, answer_ids, strict=True):
            item_id = item_ids[record.external_id]
            order = self._gold_order(record, pks, answers_of[item_id])
            earlier = self.gold_orders.get(item_id, known.get(item_id))
            if earlier is not None and _same_order(earlier, order):
                continue
            if earlier is not None:
                where = (
                    f"line {self.gold_lines[item_id]}"
                    if item_id in self.gold_lines
                    else "the admin or an earlier import"
                )
                self.source.fail(
                    record.line,
                    f"item {record.external_id} already has another known ranking (from {where}); a gold "
                    "import only adds known rankings, it does not change them",
                )
            marked[item_id] = order
            self.gold_orders[item_id] = order
            self.gold_lines[item_id] = record.line
        items = [Item(pk=item_id, gold_order=order) for item_id, order in marked.items()]
        Item.objects.bulk_update(items, ["gold_order"], batch_size=CHUNK_SIZE)
        self.batch.gold_marked += len(items)

    def _gold_order(self, record: ItemRecord, pks: list[int], item_answers: set[int]) -> list[list[int]]:
        """The record's one ranking of every answer of its item, as tie groups of answer pks, or fail."""
        for ranking in record.rankings:
            order = [[pks[index] for index in group] for group in ranking.order]
            named = [pk for group in order for pk in group]
            if not ranking.not_rankable and set(named) == item_answers and len(named) == len(item_answers):
                return order
        ranked = max((sum(map(len, r.order)) for r in record.rankings if not r.not_rankable), default=0)
        if not ranked:
            why = "its row carries no ranking"
        else:
            why = f"its row ranks {ranked} of its {len(item_answers)} answers"
            if len(item_answers) > len(record.answers):
                why += " (rows of one prompt merge into one item, and it has more answers than this row)"
        self.source.fail(
            record.line,
            f"item {record.external_id} cannot be gold: {why}; a gold item's known ranking names each of "
            "its answers once",
        )


def _same_order(a: list, b: list) -> bool:
    """Whether two rankings (tie groups of answer ids, best first) say the same, ties in any order."""
    return [sorted(group) for group in a] == [sorted(group) for group in b]
