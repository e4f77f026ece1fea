"""Pairwise preference rows as TRL and most public sets store them (FORMATS.md, 4), our pairs exports too.

Explicit prompt (`prompt`, `chosen`, `rejected` strings), conversational (lists of messages) and the
implicit Anthropic-HH prompt (full transcripts that share everything up to the last `\\n\\nAssistant:`).
Each row is an item of two answers ranked chosen > rejected; rows of one prompt share the item's key,
so whoever reads them merges them into one item with all its answers.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from ..conversations import answer_key, pair_annotator
from ..hh import ANSWER_MARKER, hh_turns
from ..records import AnswerRecord, ItemRecord, RankingRecord
from . import fields
from .files import RowFile, type_name
from .rankings import item_key


def pair_items(source: RowFile) -> Iterator[ItemRecord]:
    """Every row of the file as an item of two answers; a pair whose sides are the same text is left out."""
    for line, row in source.rows(description=source.name):
        item = pair_item(source, line, row)
        # A pair whose two sides are the same text states no preference (Anthropic HH has a few).
        if item is None:
            source.skip(line, "chosen and rejected are the same answer")
        else:
            yield item


def _split_hh(source: RowFile, line: int, text: str, what: str) -> tuple[str, str]:
    """Cut HH text at its last `\\n\\nAssistant:` into (the conversation before it, the answer after it)."""
    cut = text.rfind(ANSWER_MARKER)
    if cut < 0:
        source.fail(line, f'{what} has no "\\n\\nAssistant:" turn to take the answer from')
    return text[:cut], text[cut + len(ANSWER_MARKER) :].strip()


def _margin(source: RowFile, line: int, value: Any) -> float | None:
    """A row's `margin`: a finite number, or None where the row states none."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        source.fail(line, f"margin must be a finite number, not {value!r}")
    return float(value)


def pair_item(source: RowFile, line: int, row: dict[str, Any]) -> ItemRecord | None:
    """One pair row as an item, or None when chosen and rejected are the same text."""
    for key in ("chosen", "rejected"):
        if key not in row:
            source.fail(line, f"{key} is missing")
    chosen, rejected, prompt = row["chosen"], row["rejected"], row.get("prompt")

    if isinstance(chosen, str) and isinstance(rejected, str):
        fields.string(source, line, chosen, "chosen")
        fields.string(source, line, rejected, "rejected")
        if prompt is None:
            prefix, chosen_text = _split_hh(source, line, chosen, "chosen")
            rejected_prefix, rejected_text = _split_hh(source, line, rejected, "rejected")
            if prefix != rejected_prefix:
                source.fail(line, 'chosen and rejected differ before their last "\\n\\nAssistant:"')
            if "\n\nHuman:" not in prefix:
                source.fail(line, 'chosen has no "\\n\\nHuman:" turn before its answer')
            conversation = hh_turns(prefix)
        elif isinstance(prompt, str):
            fields.string(source, line, prompt, "prompt")
            if "\n\nHuman:" in prompt:
                # TRL's explicit-prompt copy of Anthropic HH (and our pairs export) keep the markers.
                conversation = hh_turns(prompt)  # its closing empty Assistant: turn is dropped
                chosen_text, rejected_text = chosen.strip(), rejected.strip()
            else:
                conversation = [{"role": "user", "content": prompt}]
                chosen_text, rejected_text = chosen, rejected
        else:
            source.fail(
                line, f"prompt must be a string when chosen and rejected are, not {type_name(prompt)}"
            )
    elif isinstance(chosen, list) and isinstance(rejected, list):
        if prompt is None:
            prompt_turns = []
        elif isinstance(prompt, str):
            prompt_turns = [{"role": "user", "content": fields.string(source, line, prompt, "prompt")}]
        else:
            prompt_turns = fields.turns(source, line, prompt, "prompt")
        chosen_turns = fields.turns(source, line, chosen, "chosen")
        rejected_turns = fields.turns(source, line, rejected, "rejected")
        # Implicit-prompt conversational rows repeat the conversation in both sides: keep it once.
        shared = 0
        while (
            shared < min(len(chosen_turns), len(rejected_turns)) - 1
            and chosen_turns[shared] == rejected_turns[shared]
        ):
            shared += 1
        conversation = prompt_turns + chosen_turns[:shared]
        answers = []
        for what, tail in (("chosen", chosen_turns[shared:]), ("rejected", rejected_turns[shared:])):
            if len(tail) != 1 or tail[0]["role"] != "assistant":
                source.fail(line, f"{what} must end in exactly one assistant message after the shared prompt")
            answers.append(tail[0]["content"])
        chosen_text, rejected_text = answers
    else:
        source.fail(
            line,
            f"chosen and rejected must both be strings or both be lists of messages, "
            f"not {type_name(chosen)} and {type_name(rejected)}",
        )

    fields.check_conversation(source, line, conversation, "the prompt")
    if chosen_text == rejected_text:
        return None
    # A pair row's own `id` names the pair, not its prompt: only our exports' `item_id` names the item.
    external_id = item_key(source, line, row, conversation, id_fields=("item_id",))
    chosen_answer = AnswerRecord(text=chosen_text, external_id=answer_key(external_id, chosen_text))
    rejected_answer = AnswerRecord(text=rejected_text, external_id=answer_key(external_id, rejected_text))
    fields.check_answers(source, line, [chosen_answer, rejected_answer])
    ranking = RankingRecord(
        order=((0,), (1,)),
        external_annotator=pair_annotator(chosen_answer.external_id, rejected_answer.external_id),
        # Our own pairs export writes `rank_gap` (tie groups apart), which is no margin: only `margin` is.
        margin=_margin(source, line, row.get("margin")),
    )
    return ItemRecord(
        line=line,
        external_id=external_id,
        conversation=conversation,
        answers=[chosen_answer, rejected_answer],
        rankings=[ranking],
    )
