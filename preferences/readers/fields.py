"""Field checks the readers share; each names the field and the line it came from.

Sizes are held to the source's `ReadLimits`: turns and characters of a conversation, answers of an item
and characters of an answer.
"""

from __future__ import annotations

from typing import Any

from ..conversations import ROLES, Message, role_name
from ..records import AnswerRecord
from .files import RowFile, shown, type_name

# The database columns' limits (Item/Answer.external_id, Answer.model_name).
MAX_EXTERNAL_ID = 255
MAX_MODEL_NAME = 200


def string(source: RowFile, line: int, value: Any, what: str) -> str:
    """A string the database can store."""
    if not isinstance(value, str):
        source.fail(line, f"{what} must be a string, not {type_name(value)}")
    if "\x00" in value:
        source.fail(line, f"{what} contains a NUL character, which the database cannot store")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            # JSON's "\ud800" escapes decode to lone surrogates, which no UTF-8 text (nor the database) holds.
            source.fail(
                line, f"{what} contains a lone surrogate ({shown(value[exc.start])}), which is not text"
            )
    return value


def required_string(source: RowFile, line: int, row: dict, key: str, what: str | None = None) -> str:
    """`row[key]`, which must be there and be a string."""
    if key not in row:
        source.fail(line, f"{what or key} is missing")
    return string(source, line, row[key], what or key)


def optional_string(source: RowFile, line: int, value: Any, what: str, max_length: int) -> str:
    """A string of at most `max_length` characters, or "" for null."""
    if value is None:
        return ""
    text = string(source, line, value, what)
    if len(text) > max_length:
        source.fail(line, f"{what} is longer than {max_length} characters")
    return text


def identifier(source: RowFile, line: int, value: Any, what: str) -> str:
    """An external id: a non-empty string or an integer."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    text = optional_string(source, line, value, what, MAX_EXTERNAL_ID)
    if not text.strip():
        source.fail(line, f"{what} must be a non-empty string")
    return text


def required_identifier(source: RowFile, line: int, row: dict, key: str) -> str:
    """`row[key]`, which must be there and be an external id."""
    if row.get(key) is None:
        source.fail(line, f"{key} is missing")
    return identifier(source, line, row[key], key)


def flag(source: RowFile, line: int, value: Any, what: str) -> bool:
    """A boolean that may also be missing or null (false)."""
    if value is not None and not isinstance(value, bool):
        source.fail(line, f"{what} must be true, false or null, not {type_name(value)}")
    return bool(value)


def turns(source: RowFile, line: int, value: Any, what: str) -> list[Message]:
    """A list of `{"role", "content"}` turns (also `from`/`value`, and the public formats' role names)."""
    if not isinstance(value, list):
        source.fail(line, f"{what} must be a list of turns, not {type_name(value)}")
    out = []
    for index, turn in enumerate(value):
        if not isinstance(turn, dict):
            source.fail(line, f"{what}[{index}] must be an object with role and content")
        role = role_name(turn.get("role", turn.get("from")))
        if role not in ROLES:
            source.fail(
                line, f"{what}[{index}] has unknown role {shown(role)} (expected one of {', '.join(ROLES)})"
            )
        key = next((key for key in ("content", "text", "value") if key in turn), "content")
        content = required_string(source, line, turn, key, f"{what}[{index}].{key}")
        out.append({"role": role, "content": content})
    return out


def check_conversation(source: RowFile, line: int, conversation: list[Message], what: str) -> None:
    """A conversation answers can reply to: not empty, ending with a user turn, within the size limits."""
    if not conversation:
        source.fail(line, f"{what} is empty")
    if conversation[-1]["role"] != "user":
        source.fail(line, f"{what} must end with a user turn, the one the answers reply to")
    limits = source.limits
    if len(conversation) > limits.turns:
        source.fail(line, f"{what} has {len(conversation):,} turns, more than the limit of {limits.turns:,}")
    for index, turn in enumerate(conversation):
        if len(turn["content"]) > limits.turn_chars:
            source.fail(
                line,
                f"turn {index + 1} of {what} has {len(turn['content']):,} characters, "
                f"more than the limit of {limits.turn_chars:,}",
            )


def order(
    source: RowFile, line: int, value: Any, answer_count: int, *, allow_empty: bool = False
) -> tuple[tuple[int, ...], ...]:
    """A ranking as indices best first, where a nested list is a tie group: `[[0, 2], 1]`."""
    if not isinstance(value, list):
        source.fail(line, f"ranking must be a list of answer indices, not {type_name(value)}")
    seen: set[int] = set()
    groups = []
    for element in value:
        group = element if isinstance(element, list) else [element]
        if not group:
            source.fail(line, "ranking has an empty tie group")
        for index in group:
            if not isinstance(index, int) or isinstance(index, bool):
                source.fail(line, f"ranking must hold answer indices (integers), not {type_name(index)}")
            if not 0 <= index < answer_count:
                source.fail(
                    line,
                    f"ranking names answer {index}, but the row has {answer_count} answers "
                    f"(0 to {answer_count - 1})",
                )
            if index in seen:
                source.fail(line, f"ranking names answer {index} twice")
            seen.add(index)
        groups.append(tuple(group))
    if len(seen) < 2 and not (allow_empty and not seen):
        source.fail(line, "ranking must name at least two answers")
    return tuple(groups)


def ids_to_indices(source: RowFile, line: int, value: Any, answer_ids: list[str]) -> Any:
    """A ranking that names answers by id (`[[12, 14], 13]`) as one by position in `answers`."""
    if not isinstance(value, list):
        return value  # `order` reports the shape error
    position = {answer_id: index for index, answer_id in enumerate(answer_ids)}

    def index_of(answer_id: Any) -> int:
        if (
            isinstance(answer_id, bool)
            or not isinstance(answer_id, str | int)
            or str(answer_id) not in position
        ):
            source.fail(
                line, f"ranking names answer id {shown(answer_id)}, which is not among the row's answers"
            )
        return position[str(answer_id)]

    return [
        [index_of(member) for member in element] if isinstance(element, list) else index_of(element)
        for element in value
    ]


def check_answers(source: RowFile, line: int, answers: list[AnswerRecord]) -> None:
    """Answers within the size limits, none twice in one row (the same id, or the same text without ids)."""
    limits = source.limits
    if len(answers) > limits.answers:
        source.fail(line, f"the item has {len(answers):,} answers, more than the limit of {limits.answers:,}")
    for index, answer in enumerate(answers):
        if len(answer.text) > limits.answer_chars:
            source.fail(
                line,
                f"answer {index} has {len(answer.text):,} characters, "
                f"more than the limit of {limits.answer_chars:,}",
            )
    first_index: dict[str, int] = {}
    for index, answer in enumerate(answers):
        if answer.external_id in first_index:
            source.fail(
                line,
                f"answers {first_index[answer.external_id]} and {index} are the same (same id or text)",
            )
        first_index[answer.external_id] = index
