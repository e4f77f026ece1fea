"""Ranking rows: the product's plain shape and its own `rankings` / `consensus` exports (FORMATS.md, 3).

`{"prompt" | "conversation", "answers": [text | {"text", "model", "id"}], "ranking": [0, [1, 2]]}`; when
every answer carries an `id` (as in the exports), the ranking names answers by id.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..conversations import answer_key, conversation_from_text, conversation_key
from ..records import AnswerRecord, ItemRecord, RankingRecord
from . import fields
from .files import RowFile, type_name


def ranking_row_items(source: RowFile) -> Iterator[ItemRecord]:
    """Every row of the file as an item."""
    for line, row in source.rows(description=source.name):
        yield ranking_row_item(source, line, row)


def item_key(
    source: RowFile,
    line: int,
    row: dict[str, Any],
    conversation: list[dict[str, str]],
    id_fields: tuple[str, ...] = ("id", "item_id"),
) -> str:
    """A row's key: the first of `id_fields` it has (`item_id` in our exports), else its conversation hash."""
    for key in id_fields:
        if row.get(key) is not None:
            return fields.identifier(source, line, row[key], key)
    return conversation_key(conversation)


def ranking_row_item(source: RowFile, line: int, row: dict[str, Any]) -> ItemRecord:
    """One ranking row as an item, with its ranking when it carries one."""
    if row.get("conversation") is not None:
        conversation = fields.turns(source, line, row["conversation"], "conversation")
    elif row.get("prompt") is not None:
        conversation = conversation_from_text(fields.string(source, line, row["prompt"], "prompt"))
    else:
        source.fail(line, "a ranking row needs a `prompt` or a `conversation`")
    fields.check_conversation(source, line, conversation, "conversation")
    external_id = item_key(source, line, row, conversation)

    raw_answers = row.get("answers")
    if raw_answers is None:
        source.fail(line, "answers is missing")
    if not isinstance(raw_answers, list):
        source.fail(line, f"answers must be a list, not {type_name(raw_answers)}")
    if len(raw_answers) < 2:
        source.fail(line, f"an item needs at least two answers to rank, this row has {len(raw_answers)}")
    answers = []
    for index, raw in enumerate(raw_answers):
        what = f"answers[{index}]"
        if isinstance(raw, str):
            raw = {"text": raw}
        if not isinstance(raw, dict):
            source.fail(line, f"{what} must be a string or an object with `text`, not {type_name(raw)}")
        text = fields.required_string(source, line, raw, "text", f"{what}.text")
        model = raw.get("model", raw.get("model_name"))
        model_name = fields.optional_string(source, line, model, f"{what}.model", fields.MAX_MODEL_NAME)
        if raw.get("id") is not None:
            answer_id = fields.identifier(source, line, raw["id"], f"{what}.id")
        else:
            answer_id = answer_key(external_id, text)
        answers.append(AnswerRecord(text=text, external_id=answer_id, model_name=model_name))
    fields.check_answers(source, line, answers)

    rankings = []
    if row.get("ranking") is not None:
        not_rankable = fields.flag(source, line, row.get("not_rankable"), "not_rankable")
        annotator = fields.optional_string(
            source, line, row.get("annotator"), "annotator", fields.MAX_EXTERNAL_ID
        )
        ranking = row["ranking"]
        if all(isinstance(raw, dict) and raw.get("id") is not None for raw in raw_answers):
            # Answers that carry ids (as in our own `rankings` export) are ranked by id, not by position.
            ranking = fields.ids_to_indices(source, line, ranking, [answer.external_id for answer in answers])
        order = fields.order(source, line, ranking, len(answers), allow_empty=not_rankable)
        rankings.append(RankingRecord(order=order, external_annotator=annotator, not_rankable=not_rankable))
    return ItemRecord(
        line=line, external_id=external_id, conversation=conversation, answers=answers, rankings=rankings
    )
