"""Reading a project for export: its items a chunk at a time, and the rows each format makes of them.

Rows are read a chunk of items at a time (keyset pagination on the item id: one query for the items,
one for their answers, one for their rankings) and turned into rows as they go, so that every export
streams and keeps memory flat whatever the size of the project. What the rows look like is decided in
`preferences.export_rows`, which knows nothing of the database.
"""

import hashlib
import hmac
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC
from itertools import chain

from django.conf import settings
from django.db import connection

from preferences.export_rows import (
    ExportAnswer,
    ExportItem,
    ExportRanking,
    drop_flagged,
    line_builder,
    row_builder,
)

from ..models import AnnotatorExclusion, Answer, Item, Project, Ranking
from .filters import ExportFilters, check_format

ITEM_CHUNK_SIZE = 2000


def annotator_pseudonym(user_id: int) -> str:
    """A stable name for a user that cannot be turned back into the user without SECRET_KEY."""
    digest = hmac.new(settings.SECRET_KEY.encode(), str(user_id).encode(), hashlib.sha256).hexdigest()
    return f"annotator-{digest[:12]}"


def export_items(
    *, project: Project, filters: ExportFilters, details: bool = True, chunk_size: int = ITEM_CHUNK_SIZE
) -> Iterator[ExportItem]:
    """The project's items in id order, with their answers and the rankings the filters keep.

    Without `details` the rankings' flags (unless filtering on them), time spent, creation time, comment
    and whether the order was changed are not read: the shapes other than `rankings` do not show them, and
    decoding them is a good part of the cost of a large export.
    """
    # Plain SQL rather than the ORM here: this loop is the hot path of every export, and
    # `item_id = ANY(%s)` with one array parameter lets PostgreSQL use the item index directly where
    # Django's `__in` builds a 2,000-parameter list per query. JSON columns are decoded here too.
    # SQLite (the `make run` default) gets the same statements with an IN list and no casts.
    postgres = connection.vendor == "postgresql"
    text = "::text" if postgres else ""
    with_flags = details or filters.exclude_flagged
    columns = f'item_id, annotator_id, import_batch_id, external_annotator, "order"{text}, not_rankable'
    columns += f", flags{text}" * with_flags + ", seconds_spent, created_at, comment, order_changed" * details
    conditions, params = ["item_id IN ({ids})"], []
    if filters.since:
        conditions.append("created_at >= %s")
        params.append(filters.since)
    if filters.until:
        conditions.append("created_at < %s")
        params.append(filters.until)
    if filters.changed_since:
        conditions.append("(created_at >= %s OR changed_at >= %s)")
        params.extend([filters.changed_since, filters.changed_since])
    if not filters.include_imported:
        conditions.append("source = %s")
        params.append(Ranking.Source.HUMAN.value)
    if filters.exclude_not_rankable:
        conditions.append("NOT not_rankable")
    # Annotators staff excluded from the project (annotation.annotator_quality) are left out everywhere.
    conditions.append(
        f"(annotator_id IS NULL OR annotator_id NOT IN "
        f"(SELECT annotator_id FROM {AnnotatorExclusion._meta.db_table} WHERE project_id = %s))"
    )
    params.append(project.pk)
    # Gold items (annotation.gold) measure annotators; they are not training data unless asked for.
    gold = "" if filters.include_gold else " AND gold_order IS NULL"
    items_sql = (
        f"SELECT id, external_id, conversation{text} FROM {Item._meta.db_table} "
        f"WHERE project_id = %s AND id > %s{gold} ORDER BY id LIMIT %s"
    )
    answers_sql = (
        f"SELECT item_id, id, text, model_name, external_id FROM {Answer._meta.db_table} "
        "WHERE item_id IN ({ids}) ORDER BY item_id, position"
    )
    rankings_sql = (
        f"SELECT {columns} FROM {Ranking._meta.db_table} WHERE {' AND '.join(conditions)} "
        "ORDER BY item_id, created_at, id"
    )

    def with_ids(sql: str, ids: list[int]) -> tuple[str, list]:
        if postgres:
            return sql.replace("item_id IN ({ids})", "item_id = ANY(%s)"), [ids]
        return sql.replace("{ids}", ", ".join(["%s"] * len(ids))), list(ids)

    pseudonyms: dict[int, str] = {}
    last_id = 0
    while True:
        with connection.cursor() as cursor:
            cursor.execute(items_sql, [project.pk, last_id, chunk_size])
            chunk = cursor.fetchall()
            if not chunk:
                return
            last_id = chunk[-1][0]
            ids = [row[0] for row in chunk]
            cursor.execute(*with_ids(answers_sql, ids))
            answers: dict[int, list[ExportAnswer]] = {}
            for item_id, answer_id, text, model_name, external_id in cursor.fetchall():
                answers.setdefault(item_id, []).append(ExportAnswer(answer_id, text, model_name, external_id))
            sql, id_params = with_ids(rankings_sql, ids)
            cursor.execute(sql, [*id_params, *params])
            ranking_rows = cursor.fetchall()
        by_item: dict[int, list[ExportRanking]] = {}
        orders = _decode_all([row[4] for row in ranking_rows])
        all_flags = _decode_all([row[6] for row in ranking_rows]) if with_flags else None
        for number, row in enumerate(ranking_rows):
            item_id, user_id, batch_id, external, _, not_rankable = row[:6]
            flags = all_flags[number] if with_flags else None
            seconds, created, comment, changed = row[6 + with_flags :] if details else (None, None, "", None)
            if created is not None and created.tzinfo is None:  # SQLite keeps UTC without a zone
                created = created.replace(tzinfo=UTC)
            if user_id is not None:
                who = pseudonyms.get(user_id) or pseudonyms.setdefault(user_id, annotator_pseudonym(user_id))
            else:
                who = f"import:{external or batch_id}"
            by_item.setdefault(item_id, []).append(
                ExportRanking(
                    who, orders[number] or [], not_rankable, flags or {}, seconds, created, comment, changed
                )
            )
        conversations = _decode_all([row[2] for row in chunk])
        for (item_id, external_id, _), conversation in zip(chunk, conversations, strict=True):
            item_rankings = by_item.get(item_id, [])
            if len(item_rankings) < filters.min_annotators:
                continue
            item = ExportItem(
                item_id,
                external_id,
                [
                    {"role": t.get("role", "user"), "content": t.get("content", "")}
                    for t in conversation or []
                ],
                answers.get(item_id, []),
                item_rankings,
            )
            if filters.exclude_flagged:
                drop_flagged(item)
            yield item


def _decode_all(texts: list[str]) -> list:
    """Decode many small JSON texts in one parser call: per call, not per byte, is what costs here."""
    return json.loads("[" + ",".join(texts) + "]") if texts else []


def export_item_count(*, project: Project, filters: ExportFilters | None = None) -> int:
    """How many items an export of the project walks through (for progress bars): gold items only with
    `include_gold`, as `export_items` reads them."""
    items = Item.objects.filter(project=project)
    if not (filters and filters.include_gold):
        items = items.filter(gold_order__isnull=True)
    return items.count()


@dataclass
class ExportProgress:
    """Counts an export keeps while it streams; `on_items` (if set) hears how many items just passed."""

    rows: int = 0
    items: int = 0
    items_read: int = 0
    on_items: Callable[[int], None] | None = None


def _export_pass(
    *, project: Project, format: str, filters: ExportFilters, build: Callable, progress: ExportProgress | None
) -> Iterator[list]:
    """The rows `build` makes of each item, a list per item (handing on lists, not rows, saves time)."""
    progress = progress if progress is not None else ExportProgress()
    for item in export_items(project=project, filters=filters, details=format == "rankings"):
        out = list(build(item, project.name))
        if out:
            progress.rows += len(out)
            progress.items += 1
            yield out
        progress.items_read += 1
        if progress.on_items:
            progress.on_items(1)


def export_rows(
    *,
    project: Project,
    format: str,
    filters: ExportFilters | None = None,
    progress: ExportProgress | None = None,
) -> Iterator[dict]:
    """Every row of `format` for the project, streamed; `progress` counts rows and items as they pass."""
    filters = filters or ExportFilters()
    build = row_builder(check_format(format), pairs_from=filters.pairs_from)
    return chain.from_iterable(
        _export_pass(project=project, format=format, filters=filters, build=build, progress=progress)
    )


def export_lines(
    *,
    project: Project,
    format: str,
    filters: ExportFilters | None = None,
    progress: ExportProgress | None = None,
) -> Iterator[str]:
    """The rows of `format` as JSON lines (without the newline), streamed."""
    return chain.from_iterable(
        export_line_batches(project=project, format=format, filters=filters, progress=progress)
    )


def export_line_batches(
    *, project: Project, format: str, filters: ExportFilters | None, progress: ExportProgress | None
) -> Iterator[list[str]]:
    """The JSON lines of `format`, a list per item: what the JSON Lines containers write."""
    filters = filters or ExportFilters()
    build = line_builder(check_format(format), pairs_from=filters.pairs_from)
    return _export_pass(project=project, format=format, filters=filters, build=build, progress=progress)
