"""One key, one conversation: an item key read again must come with the conversation it came with first.

Rows of one item merge (pairs of one prompt, a tree exported twice), and only the conversation tells such
a row from a different item that reuses the key; merged, the second item's answers would be ranked, and
trained on, as answers to the first one's prompt. What is kept per key is its digest and that of its
conversation with the line it was first read on (about 150 bytes per item, whatever the texts' size).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

from ..conversations import Message
from ..records import ItemRecord
from .files import RowFile

DIGEST_BYTES = 16


def conversation_digest(conversation: list[Message]) -> bytes:
    """A short digest of a conversation's roles and texts (neither can hold the NUL that separates them)."""
    digest = hashlib.blake2b(digest_size=DIGEST_BYTES)
    for turn in conversation:
        digest.update(turn["role"].encode())
        digest.update(b"\x00")
        digest.update(turn["content"].encode())
        digest.update(b"\x00")
    return digest.digest()


def one_conversation_per_key(source: RowFile, items: Iterable[ItemRecord]) -> Iterator[ItemRecord]:
    """Pass `items` through; one whose key was read before with another conversation stops the reading."""
    first_seen: dict[bytes, bytes] = {}  # key digest -> conversation digest + first line
    for item in items:
        key = hashlib.blake2b(item.external_id.encode(), digest_size=DIGEST_BYTES).digest()
        conversation = conversation_digest(item.conversation)
        seen = first_seen.get(key)
        if seen is None:
            first_seen[key] = conversation + item.line.to_bytes(8, "little")
        elif seen[:DIGEST_BYTES] != conversation:
            first_line = int.from_bytes(seen[DIGEST_BYTES:], "little")
            source.fail(
                item.line,
                f"item {item.external_id} was read at line {first_line} with a different conversation; "
                "one id must name one conversation",
            )
        yield item
