"""Rows of a preference file, one at a time with the line they came from, however large the file is.

`.jsonl` and gzip-compressed `.jsonl` are streamed line by line; a file whose first row opens a JSON array
(`.json`) is streamed row by row, its rows numbered from 1, and so are Parquet files. Every problem is an
`ImportFailed` whose text is `FILE:LINE: what is wrong`.

The file comes from outside, so what one row may cost is bounded (`ReadLimits`): a line longer than the
limit is refused once that many bytes were read, never held whole (a gzip file of 1 MB can expand to a
line of gigabytes), and JSON nested deeper than the limit is refused before anything recurses over it.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import io
import json
import logging
import re
import sys
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from tqdm import tqdm

logger = logging.getLogger(__name__)

GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
PARQUET_BATCH_ROWS = 1024
PARQUET_BATCH_BYTES = 8 * 1024 * 1024  # about this much of a row group is turned into Python rows at once
PARQUET_BUFFER_BYTES = 1024 * 1024
UTF8_BOM = codecs.BOM_UTF8
# How much of a JSON-array file is read at a time (more while one row is longer).
ARRAY_CHUNK_BYTES = 1 << 20
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


@dataclass(frozen=True)
class ReadLimits:
    """What one row of a file may hold; the importer fills them from settings, the engine keeps these."""

    line_bytes: int = 16 * 1024 * 1024  # one line of .jsonl, one row of a JSON array
    depth: int = 512  # JSON nesting; an Open-Assistant tree nests two levels per message
    turns: int = 200  # turns of an item's conversation
    turn_chars: int = 200_000  # characters of one turn
    answers: int = 64  # answers of one item
    answer_chars: int = 200_000  # characters of one answer
    # A Parquet row group, uncompressed, as its metadata states: pyarrow holds about that much while it
    # reads the group, before any row of it can be looked at, so this bounds what reading one costs.
    parquet_row_group_bytes: int = 256 * 1024 * 1024


class ImportFailed(ValueError):
    """A file that cannot be read; its str is `FILE:LINE: what is wrong`."""

    def __init__(self, file: str, line: int, message: str) -> None:
        super().__init__(f"{file}:{line}: {message}")
        self.file = file
        self.line = line
        self.message = message


def _mib(size: float) -> str:
    return f"{size / 2**20:.1f} MiB"


def shown(value: Any, width: int = 60) -> str:
    """`repr(value)` cut to `width` characters, for error messages about values of any size."""
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


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

    def __init__(
        self,
        path: Path | str,
        *,
        name: str | None = None,
        progress: bool = False,
        limits: ReadLimits | None = None,
    ) -> None:
        self.path = Path(path)
        self.name = name or self.path.name
        self.progress = progress
        self.limits = limits or ReadLimits()
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
            limit = self.limits.line_bytes
            try:
                while True:
                    # Split at "\n" only: JSON strings may hold U+2028 and the other characters that
                    # str.splitlines() also splits at (the exports write them raw). Never more than the
                    # limit: a longer line is refused without being held.
                    try:
                        line = stream.readline(limit + 1)
                    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
                        self.fail(number + 1, f"the gzip data is damaged ({exc or 'truncated'})")
                    if not line:
                        break
                    number += 1
                    if first_row:
                        head = line[len(UTF8_BOM) :] if number == 1 and line.startswith(UTF8_BOM) else line
                        if head.lstrip().startswith(b"["):
                            yield from self._array_rows(stream, head)
                            break
                    if len(line) > limit and not line.endswith(b"\n"):
                        self.fail(number, f"the line is longer than the limit of {limit:,} bytes")
                    text = self._decode(number, line)
                    if not text.strip():
                        continue
                    first_row = False
                    yield number, self._json(number, text)
                self.sha256 = tally.sha256.hexdigest()
                self.lines_read = number
            finally:
                if bar is not None:
                    bar.close()

    def _read(self, number: int, read: Any) -> bytes:
        """`read()` from the file, with damaged gzip data reported at line `number`."""
        try:
            return read()
        except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
            self.fail(number, f"the gzip data is damaged ({exc or 'truncated'})")

    def _array_rows(self, stream: io.BufferedIOBase, head: bytes) -> Iterator[tuple[int, Any]]:
        """A file that is one JSON array of rows, `head` its start: its rows, numbered from 1, as they come.

        Only the row being parsed is held (and at most the read-ahead of one chunk), each row held to the
        line limit, so a `.json` file is no more costly than the same rows as `.jsonl`.
        """
        limit = self.limits.line_bytes
        decoder = codecs.getincrementaldecoder("utf-8")()
        number = 0  # rows yielded
        buffer = ""
        position = 0
        at_end = False

        def fill() -> bool:
            """Read on into `buffer`: as much as it holds past `position` (a chunk at least), to the limit."""
            nonlocal buffer, position, at_end
            if at_end:
                return False
            pending = len(buffer) - position
            size = max(ARRAY_CHUNK_BYTES, min(pending, limit + 1 - pending))
            chunk = self._read(number + 1, lambda: stream.read(size))
            try:
                text = decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError:
                self.fail(number + 1, "not valid UTF-8")
            at_end = not chunk
            buffer = buffer[position:] + text
            position = 0
            return not at_end

        try:
            buffer = decoder.decode(head)
        except UnicodeDecodeError:
            self.fail(1, "not valid UTF-8")
        position = _WHITESPACE.match(buffer).end() + 1  # past the "["
        expect_row = None  # None at the start, True after a comma, False after a row
        while True:
            position = _WHITESPACE.match(buffer, position).end()
            if position == len(buffer):
                if not fill():
                    self.fail(number + 1, "the JSON array is not closed with ]")
                continue
            char = buffer[position]
            if expect_row is not True and char == "]":
                position += 1
                break
            if expect_row is False:
                if char != ",":
                    self.fail(number, f"not valid JSON: expected , or ] after row {number}")
                position += 1
                expect_row = True
                continue
            try:
                row, end = _DECODER.raw_decode(buffer, position)
            except RecursionError:
                self.fail(number + 1, self._too_deep_for_python())
            except ValueError as exc:
                if not at_end and _cut_short(exc, len(buffer)):
                    if len(buffer) - position > limit:
                        self.fail(number + 1, f"the row is longer than the limit of {limit:,} bytes")
                    fill()  # the row goes on past what was read so far
                    continue
                self.fail(number + 1, _json_problem(exc, column=False))
            if end == len(buffer) and fill():
                continue  # a number may go on in the next chunk: parse the row again, whole
            if end - position > limit:
                self.fail(number + 1, f"the row is longer than the limit of {limit:,} bytes")
            number += 1
            brackets = buffer.count("[", position, end) + buffer.count("{", position, end)
            self._check_depth(number, row, brackets)
            position = end
            expect_row = False
            yield number, row
        while True:
            if buffer[position:].strip(" \t\n\r"):
                self.fail(number, "not valid JSON: more data after the array's closing ]")
            if not fill():
                break

    def _parquet_rows(self) -> Iterator[tuple[int, Any]]:
        import pyarrow.parquet as pq  # only Parquet files need it

        try:
            # Column chunks streamed, not read ahead: pyarrow then holds about one row group (uncompressed)
            # at a time, where pre-buffering held several (a 200 MB file of 20 MB groups: 599 -> 176 MiB
            # peak with the byte-sized batches below).
            parquet = pq.ParquetFile(self.path, pre_buffer=False, buffer_size=PARQUET_BUFFER_BYTES)
        except Exception as exc:  # pyarrow raises several types for a damaged file
            self.fail(1, f"not a readable Parquet file ({exc})")
        number = 0
        for batch in parquet.iter_batches(batch_size=self._parquet_batch_rows(parquet.metadata)):
            for row in batch.to_pylist():
                number += 1
                yield number, row
        self.lines_read = number
        digest = hashlib.sha256()
        with open(self.path, "rb") as raw:
            for chunk in iter(lambda: raw.read(1 << 20), b""):
                digest.update(chunk)
        self.sha256 = digest.hexdigest()

    def _parquet_batch_rows(self, metadata: Any) -> int:
        """Refuse a row group larger than the limit (its first row is the line); rows per batch for ~8 MiB."""
        first_row, widest = 1, 0.0
        for index in range(metadata.num_row_groups):
            group = metadata.row_group(index)
            columns = sum(group.column(c).total_uncompressed_size for c in range(group.num_columns))
            size = max(group.total_byte_size, columns)
            limit = self.limits.parquet_row_group_bytes
            if size > limit:
                self.fail(
                    first_row,
                    f"row group {index + 1} (rows {first_row} to {first_row + group.num_rows - 1}) holds "
                    f"{_mib(size)} uncompressed, over the {_mib(limit)} one may hold; write the file with "
                    "smaller row groups (pyarrow: row_group_size)",
                )
            if group.num_rows:
                widest = max(widest, size / group.num_rows)
            first_row += group.num_rows
        if not widest:
            return PARQUET_BATCH_ROWS
        return max(1, min(PARQUET_BATCH_ROWS, int(PARQUET_BATCH_BYTES / widest)))

    def _json(self, number: int, text: str) -> Any:
        try:
            value = _DECODER.decode(text)
        except RecursionError:
            self.fail(number, self._too_deep_for_python())
        except ValueError as exc:
            self.fail(number, _json_problem(exc))
        self._check_depth(number, value, text.count("[") + text.count("{"))
        return value

    def _too_deep_for_python(self) -> str:
        # json recurses once per level, up to the interpreter's recursion limit (~1,000 less the stack).
        return f"JSON nested deeper than Python can read (the limit is {self.limits.depth} levels)"

    def _check_depth(self, number: int, value: Any, brackets: int) -> None:
        """Refuse a row nested deeper than the limit; its count of `[` and `{` spares most rows the walk."""
        if brackets > self.limits.depth and _nesting_depth(value, self.limits.depth) > self.limits.depth:
            self.fail(number, f"JSON nested deeper than the limit of {self.limits.depth} levels")

    def _decode(self, number: int, line: bytes) -> str:
        try:
            return line.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            self.fail(number, f"not valid UTF-8 (byte {exc.start + 1})")


def _json_problem(exc: ValueError, *, column: bool = True) -> str:
    """What is wrong with text that json could not read (and where, when the text is one line)."""
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON: {exc.msg}" + (f" at column {exc.colno}" if column else "")
    # The one other ValueError json raises: an integer longer than Python converts (sys.int_info).
    return f"not valid JSON here: a number with more than {sys.get_int_max_str_digits()} digits"


def _cut_short(exc: ValueError, length: int) -> bool:
    """Whether JSON text of `length` characters failed to parse only because it stops too early."""
    if not isinstance(exc, json.JSONDecodeError):
        return False
    # A value cut at the end of the text fails there (or a few characters before: `tru`, `"\\u12`), and a
    # string cut short fails where it starts.
    return exc.pos >= length - 6 or exc.msg.startswith("Unterminated string")


def _nesting_depth(value: Any, stop_above: int) -> int:
    """How deep lists and objects nest in `value` (a scalar: 0), counted no further than `stop_above` + 1."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        if depth > stop_above:
            break
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


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
