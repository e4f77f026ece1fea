"""The readers of every input format (FORMATS.md), one module per format, and the one `detect_format`.

`annotation` imports with them and `training.reward_model` trains from them, so a file means the same
items, answers and rankings to both. A reader streams a file (`RowFile`) and yields `ItemRecord`s that
remember their line; anything wrong stops it with `ImportFailed` (`FILE:LINE: what is wrong`).

Keys make re-reading idempotent: an item is keyed by the Open-Assistant prompter `message_id`, a ranking
row's `id` (or the `item_id` of our own exports), or else the hash of its conversation; an answer by its
`message_id` / `id`, or else the hash of its item's key and its text. A key that comes back with another
conversation is an error (`keys`), and what one row may hold is bounded (`ReadLimits`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..records import ItemRecord
from . import oasst, pairs, rankings
from .files import ImportFailed, ReadLimits, RowFile, shown
from .keys import one_conversation_per_key

__all__ = [
    "FORMAT_ALIASES",
    "FORMATS",
    "ImportFailed",
    "ReadLimits",
    "RowFile",
    "detect_format",
    "file_format",
    "read_items",
]

FORMATS = ("oasst-tree", "oasst-messages", "rankings", "pairs")
# The names of our export shapes that read as one of FORMATS.
FORMAT_ALIASES = {"consensus": "rankings", "plain": "rankings", "pairs-chat": "pairs", "oasst": "oasst-tree"}


def detect_format(row: dict[str, Any]) -> str | None:
    """The format of a file whose first row is `row`, or None when it matches none of FORMATS."""
    if oasst.is_tree_row(row):
        return "oasst-tree"
    if oasst.is_message_row(row):
        return "oasst-messages"
    if "chosen" in row and "rejected" in row:
        return "pairs"
    if "answers" in row:
        return "rankings"
    return None


def file_format(source: RowFile, format: str = "auto") -> str:
    """The format to read `source` in: `format` itself (or what its alias names), or else its first row's."""
    if format != "auto":
        format = FORMAT_ALIASES.get(format, format)
        if format not in FORMATS:
            raise ValueError(f"unknown format {format!r}; expected auto or one of {', '.join(FORMATS)}")
        return format
    for line, row in source.rows(progress=False):
        detected = detect_format(row)
        if detected is None:
            keys = ", ".join(shown(key, 30)[1:-1] for key in sorted(row)[:8]) or "none"
            source.fail(
                line,
                f"cannot tell the format from the first row (fields: {keys}); expected an Open-Assistant "
                "tree or message, a ranking row with `answers`, or a pair with `chosen` and `rejected`",
            )
        return detected
    source.fail(1, "the file holds no rows")


def read_items(source: RowFile, format: str) -> Iterator[ItemRecord]:
    """Yield the items of a file in one of FORMATS, validating as it goes (keys included: see `keys`)."""
    readers = {
        "oasst-tree": oasst.tree_items,
        "oasst-messages": oasst.message_items,
        "rankings": rankings.ranking_row_items,
        "pairs": pairs.pair_items,
    }
    if format not in readers:
        raise ValueError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")
    return one_conversation_per_key(source, readers[format](source))
