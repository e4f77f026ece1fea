"""The files an export is written as: JSON Lines, gzipped JSON Lines or Parquet, encoded as rows stream."""

import zlib
from collections.abc import Iterable, Iterator

from django.utils import timezone

from preferences.export_rows import compact_json

from ..models import Project
from .filters import CONTAINERS, ExportError, ExportFilters, check_format
from .reading import ExportProgress, export_line_batches, export_rows

PARQUET_ROW_GROUP_ROWS = 20_000
JSONL_FLUSH_BYTES = 1 << 20
GZIP_LEVEL = 6


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
                ("comment", pa.string()),
                ("order_changed", pa.bool_()),
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
                row["prompt"] = compact_json(row["prompt"])
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
            export_line_batches(project=project, format=format, filters=filters, progress=progress)
        )
        return encode_gzip(chunks) if container == "jsonl.gz" else chunks
    raise ExportError(f"Unknown container {container!r}; use one of {', '.join(CONTAINERS)}.")


def export_file_name(*, project: Project, format: str, container: str) -> str:
    """A download name such as `my-project-pairs-20250131-1200.jsonl.gz`."""
    slug = (
        "".join(c if c.isalnum() else "-" for c in project.name.lower()).strip("-") or f"project-{project.pk}"
    )
    return f"{slug}-{format}-{timezone.now():%Y%m%d-%H%M}.{container}"
