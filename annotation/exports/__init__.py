"""Datasets out: filters, reading a project, the files an export is written as, and snapshots.

- `filters`: the formats, file types and filters a request may ask for (`ExportFilters`, `ExportError`).
- `reading`: the project's items read a chunk at a time, made into rows by `preferences.export_rows`.
- `containers`: JSON Lines, gzip and Parquet encoders, and `export_stream`, the bytes of a download.
- `snapshots`: exports written to storage and recorded, the hourly run over every project, pruning.

The names others use are re-exported here, so `from annotation.exports import export_snapshot_create`
works from outside the app; modules inside `annotation` import from the module that defines the name.
"""

from preferences.export_rows import conversation_prompt_text, known_answers_order

from .containers import (
    encode_gzip,
    encode_jsonl,
    encode_parquet,
    export_file_name,
    export_stream,
    parquet_schema,
)
from .filters import CONTAINERS, FORMATS, PAIRS_FROM, ExportError, ExportFilters, check_format, container_for
from .reading import (
    ExportProgress,
    annotator_pseudonym,
    export_item_count,
    export_items,
    export_lines,
    export_rows,
)
from .snapshots import (
    export_snapshot_create,
    export_snapshot_latest,
    export_snapshot_prune,
    export_snapshots_write_all,
    export_source_fingerprint,
)

__all__ = [
    "CONTAINERS",
    "FORMATS",
    "PAIRS_FROM",
    "ExportError",
    "ExportFilters",
    "ExportProgress",
    "annotator_pseudonym",
    "check_format",
    "container_for",
    "conversation_prompt_text",
    "encode_gzip",
    "encode_jsonl",
    "encode_parquet",
    "export_file_name",
    "export_item_count",
    "export_items",
    "export_lines",
    "export_rows",
    "export_snapshot_create",
    "export_snapshot_latest",
    "export_snapshot_prune",
    "export_snapshots_write_all",
    "export_source_fingerprint",
    "export_stream",
    "known_answers_order",
    "parquet_schema",
]
