"""What a reader makes of a file: items, each a conversation with its answers and the rankings it carried.

Both sides read these: `annotation` writes them to the database, `training.reward_model` turns them into
training groups. Keys make re-reading idempotent (see `readers`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .conversations import Message


@dataclass(frozen=True)
class AnswerRecord:
    """One candidate answer: its text, its stable key and the model that wrote it, when known."""

    text: str
    external_id: str
    model_name: str = ""


@dataclass(frozen=True)
class RankingRecord:
    """One ranking, best first; each tie group holds indices into its item's `answers`."""

    order: tuple[tuple[int, ...], ...]
    external_annotator: str = ""
    not_rankable: bool = False
    # How much better the first answer is than the second, where a pair row states it (`margin`);
    # trainers subtract it inside the Bradley-Terry term, as TRL and Llama 2's reward models do.
    margin: float | None = None


@dataclass
class ItemRecord:
    """One rankable conversation read from a file, with its answers and any rankings it carried."""

    line: int
    external_id: str
    conversation: list[Message]
    answers: list[AnswerRecord]
    rankings: list[RankingRecord] = field(default_factory=list)
