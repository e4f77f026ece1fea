"""Datasets out: the rows of every export shape, their containers, and snapshots written to storage.

Rows are read a chunk of items at a time (keyset pagination on the item id: one query for the items,
one for their answers, one for their rankings), turned into rows and encoded as they go, so that the
API, the `export_data` command and the snapshot service all stream and keep memory flat whatever the
size of the project. The shapes are those of /shared/FORMATS.md ("Out").
"""

import hashlib
import hmac
import json
import os
import tempfile
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, date, datetime, time
from itertools import chain
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.db.models import Count, Max, Q
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from preferences.consensus import Consensus, item_consensus, ranked_pairs
from preferences.hh import hh_text
from preferences.pairs import ranking_pairs

from .models import Answer, ExportSnapshot, Item, Project, Ranking

FORMATS = [choice.value for choice in ExportSnapshot.Format]
CONTAINERS = [choice.value for choice in ExportSnapshot.Container]
PAIRS_FROM = ["rankings", "consensus"]
ITEM_CHUNK_SIZE = 2000
PARQUET_ROW_GROUP_ROWS = 20_000
JSONL_FLUSH_BYTES = 1 << 20
GZIP_LEVEL = 6


class ExportError(ValueError):
    """An export request that cannot be served: unknown format or container, a malformed filter."""


# --- Filters ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportFilters:
    """Which rankings and answers an export takes; dates bound the rankings' creation (`until` excluded)."""

    since: datetime | None = None
    until: datetime | None = None
    min_annotators: int = 1
    include_imported: bool = True
    exclude_not_rankable: bool = False
    exclude_flagged: bool = False
    # Pairs from each ranking (one row per person's preference) or from the item's consensus.
    pairs_from: str = "rankings"

    @classmethod
    def from_mapping(cls, values: Mapping[str, object] | None) -> "ExportFilters":
        """Parse filters from query parameters, command options or a stored dict; unknown keys are errors."""
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ExportError(f"Unknown filter(s): {', '.join(unknown)}.")
        parsed: dict[str, object] = {}
        for name in ("since", "until"):
            if values.get(name) not in (None, ""):
                parsed[name] = _parse_moment(name, values[name])
        if values.get("min_annotators") not in (None, ""):
            try:
                parsed["min_annotators"] = int(values["min_annotators"])
            except (TypeError, ValueError) as exc:
                raise ExportError("min_annotators must be a whole number.") from exc
            if parsed["min_annotators"] < 0:
                raise ExportError("min_annotators cannot be negative.")
        for name in ("include_imported", "exclude_not_rankable", "exclude_flagged"):
            if values.get(name) not in (None, ""):
                parsed[name] = _parse_bool(name, values[name])
        if values.get("pairs_from") not in (None, ""):
            if values["pairs_from"] not in PAIRS_FROM:
                raise ExportError(f"pairs_from must be one of {', '.join(PAIRS_FROM)}.")
            parsed["pairs_from"] = values["pairs_from"]
        return cls(**parsed)

    def as_dict(self) -> dict[str, object]:
        """Every filter, JSON-ready; two equal filter sets give equal dicts (snapshots compare them)."""
        data = asdict(self)
        for name in ("since", "until"):
            if data[name] is not None:
                data[name] = data[name].isoformat()
        return data


def _parse_moment(name: str, value: object) -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime.combine(value, time.min)
    else:
        text = str(value)
        moment = parse_datetime(text)
        if moment is None:
            day = parse_date(text)
            if day is None:
                raise ExportError(f"{name} must be a date (2025-01-31) or an ISO date-time.")
            moment = datetime.combine(day, time.min)
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, timezone.get_default_timezone())
    return moment


def _parse_bool(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ExportError(f"{name} must be true or false.")


def container_for(*, name: str | None = None, container: str | None = None) -> str:
    """The container an explicit option names, else the one the output name's ending implies (JSONL)."""
    if container:
        if container not in CONTAINERS:
            raise ExportError(f"Unknown container {container!r}; use one of {', '.join(CONTAINERS)}.")
        return container
    lowered = (name or "").lower()
    if lowered.endswith(".parquet"):
        return "parquet"
    if lowered.endswith(".gz"):
        return "jsonl.gz"
    return "jsonl"


def check_format(format: str) -> str:
    """The format itself, or ExportError naming the known ones."""
    if format not in FORMATS:
        raise ExportError(f"Unknown format {format!r}; use one of {', '.join(FORMATS)}.")
    return format


# --- Reading items a chunk at a time -------------------------------------------------------------


def annotator_pseudonym(user_id: int) -> str:
    """A stable name for a user that cannot be turned back into the user without SECRET_KEY."""
    digest = hmac.new(settings.SECRET_KEY.encode(), str(user_id).encode(), hashlib.sha256).hexdigest()
    return f"annotator-{digest[:12]}"


@dataclass
class _Answer:
    id: int
    text: str
    model: str
    external_id: str


@dataclass
class _Ranking:
    annotator: str
    order: list[list[int]]
    not_rankable: bool
    flags: dict[str, list[str]]
    seconds_spent: float | None
    created_at: datetime | None


@dataclass
class ExportItem:
    """One item as an export sees it: its answers (position order) and the rankings the filters keep."""

    id: int
    external_id: str
    conversation: list[dict[str, str]]
    answers: list[_Answer]
    rankings: list[_Ranking] = field(default_factory=list)


def export_items(
    *, project: Project, filters: ExportFilters, details: bool = True, chunk_size: int = ITEM_CHUNK_SIZE
) -> Iterator[ExportItem]:
    """The project's items in id order, with their answers and the rankings the filters keep.

    Without `details` the rankings' flags (unless filtering on them), time spent and creation time are
    not read: the shapes other than `rankings` do not show them, and decoding them is a good part of the
    cost of a large export.
    """
    # Plain SQL rather than the ORM here: this loop is the hot path of every export, and
    # `item_id = ANY(%s)` with one array parameter lets PostgreSQL use the item index directly where
    # Django's `__in` builds a 2,000-parameter list per query. JSON columns are decoded here too.
    # SQLite (the `make run` default) gets the same statements with an IN list and no casts.
    postgres = connection.vendor == "postgresql"
    text = "::text" if postgres else ""
    with_flags = details or filters.exclude_flagged
    columns = f'item_id, annotator_id, import_batch_id, external_annotator, "order"{text}, not_rankable'
    columns += f", flags{text}" * with_flags + ", seconds_spent, created_at" * details
    conditions, params = ["item_id IN ({ids})"], []
    if filters.since:
        conditions.append("created_at >= %s")
        params.append(filters.since)
    if filters.until:
        conditions.append("created_at < %s")
        params.append(filters.until)
    if not filters.include_imported:
        conditions.append("source = %s")
        params.append(Ranking.Source.HUMAN.value)
    if filters.exclude_not_rankable:
        conditions.append("NOT not_rankable")
    items_sql = (
        f"SELECT id, external_id, conversation{text} FROM {Item._meta.db_table} "
        "WHERE project_id = %s AND id > %s ORDER BY id LIMIT %s"
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
            answers: dict[int, list[_Answer]] = {}
            for item_id, answer_id, text, model_name, external_id in cursor.fetchall():
                answers.setdefault(item_id, []).append(_Answer(answer_id, text, model_name, external_id))
            sql, id_params = with_ids(rankings_sql, ids)
            cursor.execute(sql, [*id_params, *params])
            ranking_rows = cursor.fetchall()
        by_item: dict[int, list[_Ranking]] = {}
        orders = _decode_all([row[4] for row in ranking_rows])
        all_flags = _decode_all([row[6] for row in ranking_rows]) if with_flags else None
        for number, row in enumerate(ranking_rows):
            item_id, user_id, batch_id, external, _, not_rankable = row[:6]
            flags = all_flags[number] if with_flags else None
            seconds, created = row[6 + with_flags :] if details else (None, None)
            if created is not None and created.tzinfo is None:  # SQLite keeps UTC without a zone
                created = created.replace(tzinfo=UTC)
            if user_id is not None:
                who = pseudonyms.get(user_id) or pseudonyms.setdefault(user_id, annotator_pseudonym(user_id))
            else:
                who = f"import:{external or batch_id}"
            by_item.setdefault(item_id, []).append(
                _Ranking(who, orders[number] or [], not_rankable, flags or {}, seconds, created)
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
                _drop_flagged(item)
            yield item


def _decode_all(texts: list[str]) -> list:
    """Decode many small JSON texts in one parser call: per call, not per byte, is what costs here."""
    return json.loads("[" + ",".join(texts) + "]") if texts else []


def _drop_flagged(item: ExportItem) -> None:
    flagged = {int(answer_id) for r in item.rankings for answer_id, labels in r.flags.items() if labels}
    if not flagged:
        return
    item.answers = [a for a in item.answers if a.id not in flagged]
    for ranking in item.rankings:
        ranking.order = [g for g in ([a for a in group if a not in flagged] for group in ranking.order) if g]
        ranking.flags = {}


def export_item_count(*, project: Project) -> int:
    """How many items an export of the project walks through (for progress bars)."""
    return Item.objects.filter(project=project).count()


# --- Rows of each shape ----------------------------------------------------------------------------


def conversation_prompt_text(conversation: list[dict[str, str]]) -> str:
    """The conversation as one prompt string: a lone user turn as itself, longer ones Anthropic-HH style.

    HH style ("\\n\\nHuman: ...\\n\\nAssistant:") is what pairwise sets with a string prompt use for
    several turns, and what the training engine's reader splits back into turns.
    """
    if len(conversation) == 1 and conversation[0]["role"] == "user":
        return conversation[0]["content"]
    return hh_text(conversation)


def _answers_out(item: ExportItem) -> list[dict[str, object]]:
    return [{"id": a.id, "text": a.text, "model": a.model} for a in item.answers]


def known_answers_order(order: list[list[int]], known: set[int]) -> list[list[int]]:
    """The order without ids that are not among `known` (the item's answers), nor groups that empty."""
    if all(known.issuperset(group) for group in order):
        return order  # the usual case, checked cheaply
    return [g for g in ([a for a in group if a in known] for group in order) if g]


def _rankings_rows(item: ExportItem, project_name: str) -> Iterator[dict]:
    answers = _answers_out(item)
    known = {a.id for a in item.answers}
    for ranking in item.rankings:
        yield {
            "item_id": item.id,
            "project": project_name,
            "conversation": item.conversation,
            "answers": answers,
            "ranking": known_answers_order(ranking.order, known),
            "not_rankable": ranking.not_rankable,
            "flags": ranking.flags,
            "annotator": ranking.annotator,
            "created_at": ranking.created_at.isoformat(),
            "seconds_spent": ranking.seconds_spent,
        }


def _known_orders(item: ExportItem) -> list[list[list[int]]]:
    """Each ranking's order over the item's answers only."""
    known = {a.id for a in item.answers}
    return [known_answers_order(r.order, known) for r in item.rankings]


def _consensus_of(item: ExportItem) -> Consensus:
    return item_consensus(_known_orders(item), candidates=[a.id for a in item.answers])


def _consensus_ranking(item: ExportItem) -> list[list[int]]:
    """The consensus alone, without the agreement figures that `_consensus_of` also works out."""
    orders = [order for order in _known_orders(item) if order]
    return ranked_pairs(orders, candidates=[a.id for a in item.answers])


def _consensus_rows(item: ExportItem, project_name: str) -> Iterator[dict]:
    consensus = _consensus_of(item)
    yield {
        "item_id": item.id,
        "project": project_name,
        "conversation": item.conversation,
        "answers": _answers_out(item),
        "ranking": consensus.ranking,
        "n_annotators": consensus.n_annotators,
        "n_agreeing": consensus.n_agreeing,
        "agreement": consensus.agreement,
    }


def _item_pairs(item: ExportItem, pairs_from: str) -> Iterator[tuple[int, int, int]]:
    """(chosen answer id, rejected answer id, rank gap) from each ranking or from the consensus."""
    known = {a.id for a in item.answers}
    if pairs_from == "consensus":
        orders = [_consensus_ranking(item)] if item.rankings else []
    else:
        orders = [r.order for r in item.rankings]
    for order in orders:
        unknown = {a for group in order for a in group if a not in known}
        yield from ranking_pairs(order, exclude=unknown)


def _pairs_rows(pairs_from: str) -> Callable[[ExportItem, str], Iterator[dict]]:
    def rows(item: ExportItem, project_name: str) -> Iterator[dict]:
        prompt = conversation_prompt_text(item.conversation)
        texts = {a.id: a.text for a in item.answers}
        for chosen, rejected, gap in _item_pairs(item, pairs_from):
            yield {
                "prompt": prompt,
                "chosen": texts[chosen],
                "rejected": texts[rejected],
                "item_id": item.id,
                "rank_gap": gap,
            }

    return rows


def _pairs_chat_rows(pairs_from: str) -> Callable[[ExportItem, str], Iterator[dict]]:
    def rows(item: ExportItem, project_name: str) -> Iterator[dict]:
        texts = {a.id: a.text for a in item.answers}
        for chosen, rejected, gap in _item_pairs(item, pairs_from):
            yield {
                "prompt": item.conversation,
                "chosen": [{"role": "assistant", "content": texts[chosen]}],
                "rejected": [{"role": "assistant", "content": texts[rejected]}],
                "item_id": item.id,
                "rank_gap": gap,
            }

    return rows


# The pair shapes repeat an item's prompt and answers in many rows: their JSON lines are put together
# from each string encoded once per item, byte for byte what encoding `_pairs_rows` would give
# (a test holds them to it), which makes pair exports several times faster.


def _pairs_lines(pairs_from: str, chat: bool) -> Callable[[ExportItem, str], list[str]]:
    def lines(item: ExportItem, project_name: str) -> list[str]:
        pairs = list(_item_pairs(item, pairs_from))
        if not pairs:
            return []
        prompt = item.conversation if chat else conversation_prompt_text(item.conversation)
        head = '{"prompt":' + _json.encode(prompt) + ',"chosen":'
        if chat:
            encoded = {
                a.id: f'[{{"role":"assistant","content":{_json.encode(a.text)}}}]' for a in item.answers
            }
        else:
            encoded = {a.id: _json.encode(a.text) for a in item.answers}
        tail = f',"item_id":{item.id},"rank_gap":'
        return [f'{head}{encoded[c]},"rejected":{encoded[r]}{tail}{gap}}}' for c, r, gap in pairs]

    return lines


def _oasst_rows(item: ExportItem, project_name: str) -> Iterator[dict]:
    """One Open-Assistant tree per item: the thread as a chain, the answers as replies ranked by consensus.

    System turns have no Open-Assistant role and are left out.
    """
    turns = [t for t in item.conversation if t["role"] in ("user", "assistant")]
    if not turns or turns[-1]["role"] != "user" or not item.answers:
        return
    key = item.external_id or f"rewardlab-item-{item.id}"
    levels = {}
    if item.rankings:
        for level, group in enumerate(_consensus_ranking(item)):
            levels.update(dict.fromkeys(group, level))
    replies = [
        _oasst_node(
            message_id=a.external_id or f"rewardlab-answer-{a.id}",
            parent_id=key,
            text=a.text,
            role="assistant",
            rank=levels.get(a.id),
            model_name=a.model or None,
        )
        for a in item.answers
    ]
    node = None
    for index in range(len(turns) - 1, -1, -1):
        turn = turns[index]
        message_id = key if index == len(turns) - 1 else f"{key}/turn-{index}"
        parent_id = f"{key}/turn-{index - 1}" if index else None
        node = _oasst_node(
            message_id=message_id,
            parent_id=parent_id,
            text=turn["content"],
            role="prompter" if turn["role"] == "user" else "assistant",
            rank=None,
            model_name=None,
            replies=[node] if node else replies,
        )
    yield {"message_tree_id": node["message_id"], "tree_state": "ready_for_export", "prompt": node}


def _oasst_node(*, message_id, parent_id, text, role, rank, model_name, replies=()) -> dict:
    return {
        "message_id": message_id,
        "parent_id": parent_id,
        "text": text,
        "role": role,
        "lang": None,
        "deleted": False,
        "rank": rank,
        "synthetic": False,
        "model_name": model_name,
        "replies": list(replies),
    }


def _row_builder(format: str, filters: ExportFilters) -> Callable[[ExportItem, str], Iterator[dict]]:
    return {
        "rankings": _rankings_rows,
        "consensus": _consensus_rows,
        "pairs": _pairs_rows(filters.pairs_from),
        "pairs-chat": _pairs_chat_rows(filters.pairs_from),
        "oasst": _oasst_rows,
    }[check_format(format)]


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
    build = _row_builder(format, filters)
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
        _line_batches(project=project, format=format, filters=filters, progress=progress)
    )


def _line_batches(
    *, project: Project, format: str, filters: ExportFilters | None, progress: ExportProgress | None
) -> Iterator[list[str]]:
    filters = filters or ExportFilters()
    if format in ("pairs", "pairs-chat"):
        build = _pairs_lines(filters.pairs_from, chat=format == "pairs-chat")
    else:
        rows = _row_builder(format, filters)

        def build(item: ExportItem, project_name: str) -> list[str]:
            return [_json.encode(row) for row in rows(item, project_name)]

    return _export_pass(project=project, format=format, filters=filters, build=build, progress=progress)


# --- Containers -------------------------------------------------------------------------------------

_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def encode_jsonl(batches: Iterable[list[str]]) -> Iterator[bytes]:
    """JSON Lines from batches of lines, yielded in chunks of about a megabyte."""
    parts: list[str] = []
    size = 0
    for batch in batches:
        parts.extend(batch)
        size += sum(map(len, batch))
        if size >= JSONL_FLUSH_BYTES:
            parts.append("")
            yield "\n".join(parts).encode()
            parts, size = [], 0
    if parts:
        parts.append("")
        yield "\n".join(parts).encode()


def encode_gzip(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Gzip a byte stream as it passes."""
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
    for chunk in chunks:
        out = compressor.compress(chunk)
        if out:
            yield out
    yield compressor.flush()


def parquet_schema(format: str):
    """The Parquet schema of a format; pyarrow is imported only when Parquet is asked for (it is large)."""
    import pyarrow as pa

    turn = pa.struct([("role", pa.string()), ("content", pa.string())])
    answer = pa.struct([("id", pa.int64()), ("text", pa.string()), ("model", pa.string())])
    flag = pa.struct([("answer_id", pa.int64()), ("labels", pa.list_(pa.string()))])
    item_fields = [
        ("item_id", pa.int64()),
        ("project", pa.string()),
        ("conversation", pa.list_(turn)),
        ("answers", pa.list_(answer)),
        ("ranking", pa.list_(pa.list_(pa.int64()))),
    ]
    schemas = {
        "rankings": pa.schema(
            item_fields
            + [
                ("not_rankable", pa.bool_()),
                # {answer_id: [labels]} elsewhere; `datasets` reads no Arrow map, so a list of entries here.
                ("flags", pa.list_(flag)),
                ("annotator", pa.string()),
                ("created_at", pa.string()),
                ("seconds_spent", pa.float64()),
            ]
        ),
        "consensus": pa.schema(
            item_fields
            + [("n_annotators", pa.int64()), ("n_agreeing", pa.int64()), ("agreement", pa.float64())]
        ),
        "pairs": pa.schema(
            [
                ("prompt", pa.string()),
                ("chosen", pa.string()),
                ("rejected", pa.string()),
                ("item_id", pa.int64()),
                ("rank_gap", pa.int64()),
            ]
        ),
        "pairs-chat": pa.schema(
            [
                ("prompt", pa.list_(turn)),
                ("chosen", pa.list_(turn)),
                ("rejected", pa.list_(turn)),
                ("item_id", pa.int64()),
                ("rank_gap", pa.int64()),
            ]
        ),
        # A tree has no fixed depth, so no fixed Parquet type: the tree travels as its JSON text.
        "oasst": pa.schema(
            [("message_tree_id", pa.string()), ("tree_state", pa.string()), ("prompt", pa.string())]
        ),
    }
    return schemas[check_format(format)]


class _DrainableSink:
    """A write-only file for ParquetWriter whose bytes are taken away after each row group."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.position = 0
        self.closed = False

    def write(self, data) -> int:
        data = bytes(data)
        self.parts.append(data)
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def drain(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def encode_parquet(rows: Iterable[dict], *, format: str) -> Iterator[bytes]:
    """Parquet, one row group per PARQUET_ROW_GROUP_ROWS rows, yielded as each group is written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = parquet_schema(format)
    sink = _DrainableSink()
    writer = pq.ParquetWriter(sink, schema, compression="zstd")
    batch: list[dict] = []

    def flush() -> bytes:
        if format == "oasst":
            for row in batch:
                row["prompt"] = _json.encode(row["prompt"])
        elif format == "rankings":
            for row in batch:
                row["flags"] = [
                    {"answer_id": int(answer_id), "labels": labels}
                    for answer_id, labels in row["flags"].items()
                ]
        writer.write_table(pa.Table.from_pylist(batch, schema=schema))
        batch.clear()
        return sink.drain()

    for row in rows:
        batch.append(row)
        if len(batch) >= PARQUET_ROW_GROUP_ROWS:
            yield flush()
    if batch:
        yield flush()
    writer.close()
    yield sink.drain()


def export_stream(
    *,
    project: Project,
    format: str,
    container: str = "jsonl",
    filters: ExportFilters | None = None,
    progress: ExportProgress | None = None,
) -> Iterator[bytes]:
    """The bytes of an export file, streamed chunk by chunk."""
    if container == "parquet":
        return encode_parquet(
            export_rows(project=project, format=format, filters=filters, progress=progress), format=format
        )
    if container in ("jsonl", "jsonl.gz"):
        chunks = encode_jsonl(
            _line_batches(project=project, format=format, filters=filters, progress=progress)
        )
        return encode_gzip(chunks) if container == "jsonl.gz" else chunks
    raise ExportError(f"Unknown container {container!r}; use one of {', '.join(CONTAINERS)}.")


def export_file_name(*, project: Project, format: str, container: str) -> str:
    """A download name such as `my-project-pairs-20250131-1200.jsonl.gz`."""
    slug = (
        "".join(c if c.isalnum() else "-" for c in project.name.lower()).strip("-") or f"project-{project.pk}"
    )
    return f"{slug}-{format}-{timezone.now():%Y%m%d-%H%M}.{container}"


# --- Snapshots -------------------------------------------------------------------------------------


def export_source_fingerprint(*, project: Project) -> str:
    """What the project's data looks like now; any ranking, item or answer added or removed changes it."""
    items = Item.objects.filter(project=project).aggregate(n=Count("id"), last=Max("id"))
    answers = Answer.objects.filter(project=project).aggregate(n=Count("id"), last=Max("id"))
    rankings = Ranking.objects.filter(item__project=project).aggregate(n=Count("id"), last=Max("id"))
    return ":".join(str(d[k] or 0) for d in (items, answers, rankings) for k in ("n", "last"))


def export_snapshot_latest(
    *, project: Project, format: str, filters: dict | None = None, container: str = "jsonl"
) -> ExportSnapshot | None:
    """The newest snapshot of that format, those filters and that container (file type), if any."""
    normalized = ExportFilters.from_mapping(filters).as_dict()
    return (
        ExportSnapshot.objects.filter(
            project=project,
            format=format,
            container=container_for(container=container),
            filters=normalized,
        )
        .order_by("-created_at", "-id")
        .first()
    )


def export_snapshot_create(
    *,
    project: Project,
    format: str,
    filters: dict | None = None,
    force: bool = False,
    container: str = "jsonl",
    source_fingerprint: str | None = None,
) -> ExportSnapshot | None:
    """Write an export to storage and record it; None when nothing changed since the latest such snapshot.

    `source_fingerprint` is the project's export_source_fingerprint when the caller has just taken it (the
    hourly run takes it once for all formats); None works it out here.
    The file is written under a temporary name and renamed (or uploaded) only once complete, so a crash
    never leaves a half file that looks like a snapshot.
    """
    check_format(format)
    container = container_for(container=container)
    parsed = ExportFilters.from_mapping(filters)
    if source_fingerprint is None:
        source_fingerprint = export_source_fingerprint(project=project)
    latest = export_snapshot_latest(project=project, format=format, filters=filters, container=container)
    if not force and latest is not None and latest.source_fingerprint == source_fingerprint:
        return None

    now = timezone.now()
    name = f"exports/{now:%Y/%m}/{project.pk}-{format}-{now:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:8]}.{container}"
    progress = ExportProgress()
    digest = hashlib.sha256()
    chunks = export_stream(
        project=project, format=format, container=container, filters=parsed, progress=progress
    )
    name = _storage_write_atomically(name, chunks, digest)
    try:
        with transaction.atomic():
            return ExportSnapshot.objects.create(
                project=project,
                format=format,
                container=container,
                filters=parsed.as_dict(),
                file=name,
                row_count=progress.rows,
                item_count=progress.items,
                sha256=digest.hexdigest(),
                source_fingerprint=source_fingerprint,
            )
    except BaseException:
        default_storage.delete(name)
        raise


def _storage_write_atomically(name: str, chunks: Iterable[bytes], digest) -> str:
    try:
        final = Path(default_storage.path(name))
    except NotImplementedError:
        final = None
    if final is None:
        # Remote storage: spool locally, then one upload; the object appears only when complete.
        with tempfile.TemporaryFile() as spool:
            for chunk in chunks:
                digest.update(chunk)
                spool.write(chunk)
            spool.seek(0)
            return default_storage.save(name, File(spool, name=os.path.basename(name)))
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.with_name(f".{final.name}.partial")
    try:
        with open(partial, "wb") as out:
            for chunk in chunks:
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, final)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return name


def export_snapshot_prune(*, keep: int | None = None, project: Project | None = None) -> int:
    """Keep the newest `keep` (EXPORT_SNAPSHOT_RETENTION) snapshots per format, filters and container.

    Snapshots that other rows point to (a training run's data, say) are kept, whatever their age.
    """
    keep = settings.EXPORT_SNAPSHOT_RETENTION if keep is None else keep
    in_use = Q(pk__in=[])
    for relation in ExportSnapshot._meta.related_objects:
        in_use |= Q(**{f"{relation.name}__isnull": False})
    snapshots = ExportSnapshot.objects.exclude(in_use).order_by(
        "project_id", "format", "container", "-created_at", "-id"
    )
    if project is not None:
        snapshots = snapshots.filter(project=project)
    seen: dict[tuple, int] = {}
    doomed: list[tuple[int, str]] = []
    for pk, project_id, format, container, filters, file_name in snapshots.values_list(
        "pk", "project_id", "format", "container", "filters", "file"
    ).iterator(chunk_size=2000):
        # Per container too, as export_snapshot_latest looks: forced parquet files must not push out the
        # scheduled jsonl one, or the next run would write that again.
        key = (project_id, format, container, json.dumps(filters, sort_keys=True))
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > keep:
            doomed.append((pk, file_name))
    with transaction.atomic():
        ExportSnapshot.objects.filter(pk__in=[pk for pk, _ in doomed]).delete()
        names = [file_name for _, file_name in doomed if file_name]
        transaction.on_commit(lambda: [default_storage.delete(n) for n in names])
    return len(doomed)


def export_snapshots_write_all(*, formats: Iterable[str] | None = None) -> list[ExportSnapshot]:
    """Snapshot every active project in every format (default filters) where something changed, then prune."""
    written = []
    for project in Project.objects.filter(is_active=True).order_by("pk"):
        # Taken once, before any file is written: whatever changes meanwhile shows in the next run.
        source_fingerprint = export_source_fingerprint(project=project)
        for format in formats or FORMATS:
            snapshot = export_snapshot_create(
                project=project, format=format, source_fingerprint=source_fingerprint
            )
            if snapshot is not None:
                written.append(snapshot)
    export_snapshot_prune()
    return written
