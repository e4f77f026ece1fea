"""Writing imported files into a project: all or nothing, and never the same thing twice.

The parsing lives in `annotation.importers`; this module turns its records into rows. Items,
answers and imported rankings are matched on their external ids (and rankings on
`(item, external_annotator)`), so re-importing a file adds nothing, and a file that overlaps an
earlier one adds only what is new. Rows that exist are never changed: an item keeps its
conversation, an imported ranking keeps its order.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.uploadedfile import UploadedFile
from django.db import reset_queries, transaction
from django.db.models import Max

from .importers import FORMATS, ImportedItem, ImportFailed, JsonLines, detect_format, parse
from .models import Answer, ImportBatch, Item, Project, Ranking

__all__ = ["FORMATS", "ImportFailed", "import_file", "import_upload"]

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
) -> ImportBatch:
    """Import a .jsonl / .jsonl.gz file into a project in one transaction; a bad line raises ImportFailed."""
    source = JsonLines(Path(path), name=file_name or Path(path).name, progress=progress)
    if format == "auto":
        format = detect_format(source)
    elif format not in FORMATS:
        raise ValueError(f"unknown import format {format!r}; expected auto or one of {', '.join(FORMATS)}")
    with transaction.atomic():
        # Two imports into one project at once would race on the external ids; take turns.
        Project.objects.select_for_update().get(pk=project.pk)
        batch = ImportBatch.objects.create(
            project=project, file_name=source.name[:500], format=format, created_by=user
        )
        writer = _ChunkWriter(batch=batch, source=source)
        records = parse(source, format)
        while chunk := list(itertools.islice(records, CHUNK_SIZE)):
            writer.write(chunk)
            if settings.DEBUG:
                # DEBUG keeps the last 9000 queries' SQL; with bulk inserts of long texts that is gigabytes.
                reset_queries()
        batch.lines_read = source.lines_read
        batch.sha256 = source.sha256
        batch.save(
            update_fields=["lines_read", "sha256", "items_created", "answers_created", "rankings_created"]
        )
    return batch


def import_upload(
    *, upload: UploadedFile, project: Project, format: str = "auto", user: AbstractBaseUser | None = None
) -> ImportBatch:
    """Import an uploaded file (admin or API), streaming it from disk rather than from memory."""
    if hasattr(upload, "temporary_file_path"):
        return import_file(
            path=Path(upload.temporary_file_path()),
            project=project,
            format=format,
            user=user,
            file_name=upload.name,
        )
    # Small uploads are held in memory by Django; write them out so one code path reads every file.
    handle, name = tempfile.mkstemp(prefix="rewardlab-import-", suffix=".jsonl")
    try:
        with os.fdopen(handle, "wb") as out:
            for piece in upload.chunks():
                out.write(piece)
        return import_file(path=Path(name), project=project, format=format, user=user, file_name=upload.name)
    finally:
        os.unlink(name)


class _ChunkWriter:
    """Writes records a chunk at a time with a handful of queries, counting what it created.

    The external-id lookups repeat the unique indexes' `external_id <> ''` condition: without it
    PostgreSQL cannot use those partial indexes for an IN list of more than 100 values, and each
    chunk would scan every answer of the project.
    """

    def __init__(self, *, batch: ImportBatch, source: JsonLines) -> None:
        self.batch = batch
        self.project = batch.project
        self.source = source

    def write(self, records: list[ImportedItem]) -> None:
        item_ids, existing_item_ids = self._items(records)
        answer_ids = self._answers(records, item_ids, existing_item_ids)
        self._rankings(records, item_ids, existing_item_ids, answer_ids)

    def _items(self, records: Iterable[ImportedItem]) -> tuple[dict[str, int], set[int]]:
        """Item pk by external id, creating the items not seen before; and the pks that already existed."""
        wanted = {record.external_id for record in records}
        item_ids = dict(
            Item.objects.filter(project=self.project, external_id__in=wanted)
            .exclude(external_id="")
            .values_list("external_id", "pk")
        )
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

    def _answers(
        self, records: list[ImportedItem], item_ids: dict[str, int], existing_item_ids: set[int]
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
        records: list[ImportedItem],
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
