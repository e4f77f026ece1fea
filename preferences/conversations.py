"""Conversations as lists of `{"role", "content"}` turns, and the stable keys of items and answers.

One set of role names (`system`, `user`, `assistant`) for everything the product stores and trains on;
the public formats' other names for them (`prompter`, `human`, `gpt`, ...) are mapped here, once.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .hh import hh_turns

Message = dict[str, str]
ROLES = ("system", "user", "assistant")
# Role names of the public formats (Open-Assistant, ShareGPT, HH) mapped onto the chat-template vocabulary.
ROLE_ALIASES = {"prompter": "user", "human": "user", "gpt": "assistant", "bot": "assistant"}


def role_name(role: Any) -> Any:
    """The product's name for a role written in any of the public formats; other values come back as given."""
    if isinstance(role, str):
        lowered = role.lower()
        return ROLE_ALIASES.get(lowered, lowered)
    return role


def conversation_from_text(text: str) -> list[Message]:
    """A string prompt as turns: an HH transcript split at its speaker tags, else one user turn."""
    if "\n\nHuman:" in text or text.startswith(("Human:", "\n\nSystem:")):
        return hh_turns(text)
    return [{"role": "user", "content": text}]


def normalize_conversation(conversation: Any) -> list[Message]:
    """Turns from a string or a message list of any common shape (`role`/`from`, `content`/`text`/`value`)."""
    if conversation is None:
        return []
    if isinstance(conversation, str):
        return conversation_from_text(conversation)
    out = []
    for message in conversation:
        role = role_name(str(message.get("role") or message.get("from") or "user"))
        content = message.get("content", message.get("text", message.get("value", "")))
        out.append({"role": role, "content": "" if content is None else str(content)})
    return out


def conversation_key(conversation: list[Message]) -> str:
    """A stable key for an item that has no id of its own: the hash of its conversation."""
    canonical = json.dumps(conversation, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def answer_key(item_key: str, text: str) -> str:
    """A stable key for an answer that has no id of its own: the hash of its item's key and its text."""
    return "sha256:" + hashlib.sha256(f"{item_key}\x00{text}".encode()).hexdigest()


def pair_annotator(chosen_key: str, rejected_key: str) -> str:
    """The annotator name of an imported pair, so each chosen > rejected pair of an item is kept once."""
    digest = hashlib.sha256(f"{chosen_key}\x00{rejected_key}".encode()).hexdigest()
    return "pair:" + digest[:32]
