"""The rows of every export shape, made from one item at a time; pure Python, no database.

An `ExportItem` is what the reader hands over: the conversation, the answers in position order and the
rankings people gave (each with its flags). `row_builder` turns it into the rows of one format and
`line_builder` into their JSON lines; the shapes are those of /shared/FORMATS.md ("Out").
"""

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from .consensus import Consensus, item_consensus, ranked_pairs
from .hh import hh_text
from .pairs import ranking_pairs

# The one encoding of every JSON line the exports write: compact, non-ASCII text as itself.
compact_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


@dataclass
class ExportAnswer:
    """An answer as the exports show it; `external_id` names it in Open-Assistant trees."""

    id: int
    text: str
    model: str
    external_id: str


@dataclass
class ExportRanking:
    """One person's ranking of an item: tie groups of answer ids, best first, and what came with it."""

    annotator: str
    order: list[list[int]]
    not_rankable: bool
    flags: dict[str, list[str]]
    seconds_spent: float | None
    created_at: datetime | None
    comment: str = ""
    order_changed: bool | None = None


@dataclass
class ExportItem:
    """One item as an export sees it: its answers (position order) and the rankings the filters keep."""

    id: int
    external_id: str
    conversation: list[dict[str, str]]
    answers: list[ExportAnswer]
    rankings: list[ExportRanking] = field(default_factory=list)


RowBuilder = Callable[[ExportItem, str], Iterator[dict]]
LineBuilder = Callable[[ExportItem, str], list[str]]


def drop_flagged(item: ExportItem) -> None:
    """Take out of the item every answer someone flagged, from its answers and from every ranking."""
    flagged = {int(answer_id) for r in item.rankings for answer_id, labels in r.flags.items() if labels}
    if not flagged:
        return
    item.answers = [a for a in item.answers if a.id not in flagged]
    for ranking in item.rankings:
        ranking.order = [g for g in ([a for a in group if a not in flagged] for group in ranking.order) if g]
        ranking.flags = {}


def conversation_prompt_text(conversation: list[dict[str, str]]) -> str:
    """The conversation as one prompt string: a lone user turn as itself, longer ones Anthropic-HH style.

    HH style ("\\n\\nHuman: ...\\n\\nAssistant:") is what pairwise sets with a string prompt use for
    several turns, and what the training engine's reader splits back into turns.
    """
    if len(conversation) == 1 and conversation[0]["role"] == "user":
        return conversation[0]["content"]
    return hh_text(conversation)


def _answers_out(item: ExportItem) -> list[dict[str, object]]:
    return [{"id": a.id, "text": a.text, "model": a.model} for a in item.answers]


def known_answers_order(order: list[list[int]], known: set[int]) -> list[list[int]]:
    """The order without ids that are not among `known` (the item's answers), nor groups that empty."""
    if all(known.issuperset(group) for group in order):
        return order  # the usual case, checked cheaply
    return [g for g in ([a for a in group if a in known] for group in order) if g]


def _rankings_rows(item: ExportItem, project_name: str) -> Iterator[dict]:
    answers = _answers_out(item)
    known = {a.id for a in item.answers}
    for ranking in item.rankings:
        yield {
            "item_id": item.id,
            "project": project_name,
            "conversation": item.conversation,
            "answers": answers,
            "ranking": known_answers_order(ranking.order, known),
            "not_rankable": ranking.not_rankable,
            "flags": ranking.flags,
            "annotator": ranking.annotator,
            "created_at": ranking.created_at.isoformat(),
            "seconds_spent": ranking.seconds_spent,
            "comment": ranking.comment,
            "order_changed": ranking.order_changed,
        }


def _known_orders(item: ExportItem) -> list[list[list[int]]]:
    """Each ranking's order over the item's answers only."""
    known = {a.id for a in item.answers}
    return [known_answers_order(r.order, known) for r in item.rankings]


def _consensus_of(item: ExportItem) -> Consensus:
    return item_consensus(_known_orders(item), candidates=[a.id for a in item.answers])


def _consensus_ranking(item: ExportItem) -> list[list[int]]:
    """The consensus alone, without the agreement figures that `_consensus_of` also works out."""
    orders = [order for order in _known_orders(item) if order]
    return ranked_pairs(orders, candidates=[a.id for a in item.answers])


def _consensus_rows(item: ExportItem, project_name: str) -> Iterator[dict]:
    consensus = _consensus_of(item)
    yield {
        "item_id": item.id,
        "project": project_name,
        "conversation": item.conversation,
        "answers": _answers_out(item),
        "ranking": consensus.ranking,
        "n_annotators": consensus.n_annotators,
        "n_agreeing": consensus.n_agreeing,
        "agreement": consensus.agreement,
    }


def _item_pairs(item: ExportItem, pairs_from: str) -> Iterator[tuple[int, int, int]]:
    """(chosen answer id, rejected answer id, rank gap) from each ranking or from the consensus."""
    known = {a.id for a in item.answers}
    if pairs_from == "consensus":
        orders = [_consensus_ranking(item)] if item.rankings else []
    else:
        orders = [r.order for r in item.rankings]
    for order in orders:
        unknown = {a for group in order for a in group if a not in known}
        yield from ranking_pairs(order, exclude=unknown)


def _pairs_rows(pairs_from: str) -> RowBuilder:
    def rows(item: ExportItem, project_name: str) -> Iterator[dict]:
        prompt = conversation_prompt_text(item.conversation)
        texts = {a.id: a.text for a in item.answers}
        for chosen, rejected, gap in _item_pairs(item, pairs_from):
            yield {
                "prompt": prompt,
                "chosen": texts[chosen],
                "rejected": texts[rejected],
                "item_id": item.id,
                "rank_gap": gap,
            }

    return rows


def _pairs_chat_rows(pairs_from: str) -> RowBuilder:
    def rows(item: ExportItem, project_name: str) -> Iterator[dict]:
        texts = {a.id: a.text for a in item.answers}
        for chosen, rejected, gap in _item_pairs(item, pairs_from):
            yield {
                "prompt": item.conversation,
                "chosen": [{"role": "assistant", "content": texts[chosen]}],
                "rejected": [{"role": "assistant", "content": texts[rejected]}],
                "item_id": item.id,
                "rank_gap": gap,
            }

    return rows


# The pair shapes repeat an item's prompt and answers in many rows: their JSON lines are put together
# from each string encoded once per item, byte for byte what encoding `_pairs_rows` would give
# (a test holds them to it), which makes pair exports several times faster.


def _pairs_lines(pairs_from: str, chat: bool) -> LineBuilder:
    def lines(item: ExportItem, project_name: str) -> list[str]:
        pairs = list(_item_pairs(item, pairs_from))
        if not pairs:
            return []
        prompt = item.conversation if chat else conversation_prompt_text(item.conversation)
        head = '{"prompt":' + compact_json(prompt) + ',"chosen":'
        if chat:
            encoded = {
                a.id: f'[{{"role":"assistant","content":{compact_json(a.text)}}}]' for a in item.answers
            }
        else:
            encoded = {a.id: compact_json(a.text) for a in item.answers}
        tail = f',"item_id":{item.id},"rank_gap":'
        return [f'{head}{encoded[c]},"rejected":{encoded[r]}{tail}{gap}}}' for c, r, gap in pairs]

    return lines


def _oasst_rows(item: ExportItem, project_name: str) -> Iterator[dict]:
    """One Open-Assistant tree per item: the thread as a chain, the answers as replies ranked by consensus.

    System turns have no Open-Assistant role and are left out.
    """
    turns = [t for t in item.conversation if t["role"] in ("user", "assistant")]
    if not turns or turns[-1]["role"] != "user" or not item.answers:
        return
    key = item.external_id or f"rewardlab-item-{item.id}"
    levels = {}
    if item.rankings:
        for level, group in enumerate(_consensus_ranking(item)):
            levels.update(dict.fromkeys(group, level))
    replies = [
        _oasst_node(
            message_id=a.external_id or f"rewardlab-answer-{a.id}",
            parent_id=key,
            text=a.text,
            role="assistant",
            rank=levels.get(a.id),
            model_name=a.model or None,
        )
        for a in item.answers
    ]
    node = None
    for index in range(len(turns) - 1, -1, -1):
        turn = turns[index]
        message_id = key if index == len(turns) - 1 else f"{key}/turn-{index}"
        parent_id = f"{key}/turn-{index - 1}" if index else None
        node = _oasst_node(
            message_id=message_id,
            parent_id=parent_id,
            text=turn["content"],
            role="prompter" if turn["role"] == "user" else "assistant",
            rank=None,
            model_name=None,
            replies=[node] if node else replies,
        )
    yield {"message_tree_id": node["message_id"], "tree_state": "ready_for_export", "prompt": node}


def _oasst_node(*, message_id, parent_id, text, role, rank, model_name, replies=()) -> dict:
    return {
        "message_id": message_id,
        "parent_id": parent_id,
        "text": text,
        "role": role,
        "lang": None,
        "deleted": False,
        "rank": rank,
        "synthetic": False,
        "model_name": model_name,
        "replies": list(replies),
    }


def row_builder(format: str, *, pairs_from: str = "rankings") -> RowBuilder:
    """What turns an item into the rows of `format`; pairs come from each ranking or from the consensus."""
    return {
        "rankings": _rankings_rows,
        "consensus": _consensus_rows,
        "pairs": _pairs_rows(pairs_from),
        "pairs-chat": _pairs_chat_rows(pairs_from),
        "oasst": _oasst_rows,
    }[format]


def line_builder(format: str, *, pairs_from: str = "rankings") -> LineBuilder:
    """What turns an item into the JSON lines (without newlines) of `format`: its rows, encoded."""
    if format in ("pairs", "pairs-chat"):
        return _pairs_lines(pairs_from, chat=format == "pairs-chat")
    rows = row_builder(format, pairs_from=pairs_from)

    def lines(item: ExportItem, project_name: str) -> list[str]:
        return [compact_json(row) for row in rows(item, project_name)]

    return lines
