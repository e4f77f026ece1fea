"""Rows of a preference file, one at a time with the line they came from, however large the file is.

`.jsonl` and gzip-compressed `.jsonl` are streamed line by line; a file whose first row opens a JSON array
(`.json`) and Parquet files are read as whole rows numbered from 1. Every problem is an `ImportFailed`
whose text is `FILE:LINE: what is wrong`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import sys
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NoReturn

from tqdm import tqdm

logger = logging.getLogger(__name__)

GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
PARQUET_BATCH_ROWS = 1024


class ImportFailed(ValueError):
    """A file that cannot be read; its str is `FILE:LINE: what is wrong`."""

    def __init__(self, file: str, line: int, message: str) -> None:
        super().__init__(f"{file}:{line}: {message}")
        self.file = file
        self.line = line
        self.message = message


def type_name(value: Any) -> str:
    """How an error names the JSON type of a value: `an object`, `a list`, `null`..."""
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), f"a {type(value).__name__}"
    )


class _TallyingReader(io.RawIOBase):
    """Passes bytes through while hashing them and reporting how many were read (for the progress bar)."""

    def __init__(self, raw: io.BufferedReader, bar: tqdm | None) -> None:
        self.raw = raw
        self.bar = bar
        self.sha256 = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = self.raw.readinto(buffer)
        if count:
            self.sha256.update(memoryview(buffer)[:count])
            if self.bar is not None:
                self.bar.update(count)
        return count


class RowFile:
    """A preference file read row by row; remembers its digest, its row count and the rows it left out."""

    def __init__(self, path: Path | str, *, name: str | None = None, progress: bool = False) -> None:
        self.path = Path(path)
        self.name = name or self.path.name
        self.progress = progress
        self.sha256 = ""
        self.lines_read = 0
        self.rows_read = 0
        self.skipped: dict[str, int] = {}

    def fail(self, line: int, message: str) -> NoReturn:
        """Stop reading: `line` of this file is wrong because of `message`."""
        raise ImportFailed(self.name, line, message)

    def skip(self, line: int, reason: str) -> None:
        """Leave one row out for `reason`, counted (readers never drop a row silently) and logged."""
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        logger.warning("%s:%d: %s; row skipped", self.name, line, reason)

    def rows(self, *, description: str = "", progress: bool = True) -> Iterator[tuple[int, dict[str, Any]]]:
        """Yield (line number, object) for every non-blank row; bad JSON stops with its line."""
        with open(self.path, "rb") as raw:
            magic = raw.read(4)
        if magic == PARQUET_MAGIC:
            rows = self._parquet_rows()
        else:
            rows = self._json_rows(
                compressed=magic[:2] == GZIP_MAGIC, description=description, progress=progress
            )
        count = 0
        for line, row in rows:
            if not isinstance(row, dict):
                self.fail(line, f"expected a JSON object, got {type_name(row)}")
            count += 1
            yield line, row
        self.rows_read = count

    def _json_rows(self, *, compressed: bool, description: str, progress: bool) -> Iterator[tuple[int, Any]]:
        size = self.path.stat().st_size
        bar = (
            tqdm(total=size, unit="B", unit_scale=True, desc=description or self.name, file=sys.stderr)
            if self.progress and progress
            else None
        )
        with open(self.path, "rb") as raw:
            tally = _TallyingReader(raw, bar)
            stream = gzip.GzipFile(fileobj=tally, mode="rb") if compressed else io.BufferedReader(tally)
            number = 0
            first_row = True
            try:
                while True:
                    try:
                        # Split at "\n" only: JSON strings may hold U+2028 and the other characters that
                        # str.splitlines() also splits at (the exports write them raw).
                        line = stream.readline()
                    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
                        self.fail(number + 1, f"the gzip data is damaged ({exc or 'truncated'})")
                    if not line:
                        break
                    number += 1
                    text = self._decode(number, line)
                    if not text.strip():
                        continue
                    if first_row and text.lstrip().startswith("["):
                        yield from self._array_rows(number, text + self._decode(number, stream.read()))
                        break
                    first_row = False
                    yield number, self._json(number, text)
                self.sha256 = tally.sha256.hexdigest()
                self.lines_read = number
            finally:
                if bar is not None:
                    bar.close()

    def _array_rows(self, line: int, text: str) -> Iterator[tuple[int, Any]]:
        """A file that is one JSON array of rows: its rows, numbered from 1."""
        rows = self._json(line, text)
        if not isinstance(rows, list):
            self.fail(line, f"expected a JSON array of rows, got {type_name(rows)}")
        yield from enumerate(rows, start=1)

    def _parquet_rows(self) -> Iterator[tuple[int, Any]]:
        import pyarrow.parquet as pq  # only Parquet files need it

        try:
            parquet = pq.ParquetFile(self.path)
        except Exception as exc:  # pyarrow raises several types for a damaged file
            self.fail(1, f"not a readable Parquet file ({exc})")
        number = 0
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            for row in batch.to_pylist():
                number += 1
                yield number, row
        self.lines_read = number
        digest = hashlib.sha256()
        with open(self.path, "rb") as raw:
            for chunk in iter(lambda: raw.read(1 << 20), b""):
                digest.update(chunk)
        self.sha256 = digest.hexdigest()

    def _json(self, number: int, text: str) -> Any:
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            self.fail(number, f"not valid JSON: {exc.msg} at column {exc.colno}")

    def _decode(self, number: int, line: bytes) -> str:
        try:
            return line.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            self.fail(number, f"not valid UTF-8 (byte {exc.start + 1})")


class RowList(RowFile):
    """Rows already in memory (built by code rather than read from a file), numbered from 1."""

    def __init__(self, rows: Iterable[dict[str, Any]], *, name: str = "<rows>") -> None:
        super().__init__(Path(name), name=name)
        self._rows = list(rows)

    def rows(self, *, description: str = "", progress: bool = True) -> Iterator[tuple[int, dict[str, Any]]]:
        """Yield (position from 1, row) for every row."""
        for line, row in enumerate(self._rows, start=1):
            if not isinstance(row, dict):
                self.fail(line, f"expected a JSON object, got {type_name(row)}")
            yield line, row
        self.rows_read = self.lines_read = len(self._rows)
