"""Open-Assistant data (FORMATS.md, 1 and 2): message trees, the same nodes as flat rows, or bare root nodes.

A tree export line wraps its root in `{"message_tree_id", "prompt": {...}}`; a line may also be the root
prompter message itself with its nested `replies` (no wrapper); message rows are the same nodes, flat,
linked by `parent_id`, and are rebuilt into trees. Every prompter message with two or more live assistant
replies, at any depth, becomes an item.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from ..conversations import answer_key, conversation_key
from ..records import AnswerRecord, ItemRecord, RankingRecord
from . import fields
from .files import RowFile, shown, type_name

OASST_ROLES = {"prompter": "user", "assistant": "assistant"}
# What a message-row reader keeps of each row until its tree is complete (texts, not labels/detoxify).
OASST_KEPT_FIELDS = (
    "message_id",
    "parent_id",
    "user_id",
    "text",
    "role",
    "deleted",
    "rank",
    "model_name",
    "events",
)

LineOf = Callable[[Any], int]


def is_tree_row(row: dict[str, Any]) -> bool:
    """A tree export line, or a root message node carrying its replies without the tree wrapper."""
    if "message_tree_id" in row and isinstance(row.get("prompt"), dict):
        return True
    role = row.get("role")
    return (
        "message_tree_id" not in row
        and isinstance(role, str)
        and role in OASST_ROLES
        and isinstance(row.get("replies"), list)
    )


def is_message_row(row: dict[str, Any]) -> bool:
    """One message of a flat message-rows export."""
    return "message_id" in row and "role" in row


def tree_items(source: RowFile) -> Iterator[ItemRecord]:
    """The items of every tree in a file of tree export lines or bare root nodes."""
    for line, row in source.rows(description=source.name):
        if "prompt" in row:
            root = row["prompt"]
            if root is None:  # the export schema allows a tree without messages
                continue
        elif "message_tree_id" in row:
            source.fail(line, "prompt is missing (the tree's first message)")
        elif row.get("role") is not None or row.get("replies") is not None:
            root = row  # a bare root message with nested replies
        else:
            source.fail(line, "expected a tree with `prompt`, or a prompter message with `replies`")
        yield from _items(source, root, lambda node, line=line: line)


def message_items(source: RowFile) -> Iterator[ItemRecord]:
    """Rebuild trees from message rows in two passes, holding only the trees not yet complete.

    The first pass keeps, per tree, the line of its last row (a few dozen bytes per tree). The second
    keeps each tree's rows until that line and then lets them go. Exports written tree by tree hold
    one tree at a time; a file whose trees are interleaved holds every tree open at once, so its
    memory grows with how far apart a tree's first and last rows lie.
    """
    last_line: dict[str, int] = {}
    for line, row in source.rows(description=f"{source.name} (indexing trees)"):
        tree_id = fields.required_identifier(source, line, row, "message_tree_id")
        fields.required_identifier(source, line, row, "message_id")
        last_line[tree_id] = line

    open_trees: dict[str, list[dict[str, Any]]] = {}
    for line, row in source.rows(description=f"{source.name} (importing)"):
        tree_id = fields.required_identifier(source, line, row, "message_tree_id")
        if last_line.get(tree_id, 0) < line:
            source.fail(line, "the file changed while it was read")
        node = {key: row[key] for key in OASST_KEPT_FIELDS if key in row}
        node["message_id"] = fields.required_identifier(source, line, row, "message_id")
        if node.get("parent_id") is not None:
            node["parent_id"] = fields.identifier(source, line, node["parent_id"], "parent_id")
        node["_line"] = line
        open_trees.setdefault(tree_id, []).append(node)
        if last_line[tree_id] == line:
            root = _tree_from_rows(source, tree_id, open_trees.pop(tree_id))
            yield from _items(source, root, lambda node: node["_line"])


def _tree_from_rows(source: RowFile, tree_id: str, nodes: list[dict[str, Any]]) -> dict[str, Any]:
    by_id: dict[str, dict[str, Any]] = {}
    for node in nodes:
        if node["message_id"] in by_id:
            source.fail(node["_line"], f"message {node['message_id']} appears twice")
        node["replies"] = []
        by_id[node["message_id"]] = node
    roots = []
    for node in nodes:
        parent_id = node.get("parent_id")
        if parent_id is None:
            roots.append(node)
        elif parent_id == node["message_id"]:
            source.fail(node["_line"], f"message {parent_id} names itself as its parent")
        elif parent_id in by_id:
            by_id[parent_id]["replies"].append(node)
        else:
            source.fail(node["_line"], f"parent {parent_id!r} is not a message of tree {tree_id}")
    if len(roots) != 1:
        source.fail(nodes[0]["_line"], f"tree {tree_id} has {len(roots)} messages without a parent, not one")
    reached = set()
    stack = [roots[0]]
    while stack:
        node = stack.pop()
        reached.add(node["message_id"])
        stack.extend(node["replies"])
    for node in nodes:
        if node["message_id"] not in reached:
            # Parents that lead back to themselves: a cycle, which no root reaches.
            source.fail(node["_line"], f"message {node['message_id']} is in a cycle of parent_id links")
    return roots[0]


def _items(source: RowFile, root: Any, line_of: LineOf) -> Iterator[ItemRecord]:
    """Every prompter message with two or more live assistant replies, at any depth, becomes an item.

    A deleted message is dropped with everything below it: a thread that runs through it is no
    context anyone should rank answers in.
    """
    stack: list[tuple[Any, list[dict[str, str]], str | None]] = [(root, [], None)]
    while stack:
        node, thread, expected_role = stack.pop()
        if not isinstance(node, dict):
            source.fail(line_of(root), f"a message must be an object, not {type_name(node)}")
        line = line_of(node)
        if fields.flag(source, line, node.get("deleted"), "deleted"):
            continue
        role = node.get("role")
        name = _name(node)
        if not isinstance(role, str) or role not in OASST_ROLES:
            source.fail(line, f"message {name} has unknown role {shown(role)} (expected prompter, assistant)")
        if expected_role is not None and role != expected_role:
            # Only two roles exist, so a wrong one means the same role twice in a row.
            source.fail(line, f"message {name} has the role of the message it replies to ({role})")
        if expected_role is None and role != "prompter":
            source.fail(line, "a tree must start with a prompter message")
        text = fields.required_string(source, line, node, "text", f"text of message {name}")
        conversation = [*thread, {"role": OASST_ROLES[role], "content": text}]
        replies = node.get("replies") or []
        if not isinstance(replies, list):
            source.fail(line, f"replies must be a list, not {type_name(replies)}")
        for reply in replies:
            if not isinstance(reply, dict):
                source.fail(line, f"replies must hold message objects, not {type_name(reply)}")
        live = [
            reply
            for reply in replies
            if not fields.flag(source, line_of(reply), reply.get("deleted"), "deleted")
        ]
        if live:
            # A thread that goes on is the context of what replies to it: held to the limits here, before a
            # deep chain of message rows costs a copy of its ever longer thread per message.
            _check_thread(source, line, name, conversation)
        if role == "prompter" and len(live) >= 2:
            yield _item(source, line, node, conversation, live, line_of)
        next_role = "assistant" if role == "prompter" else "prompter"
        for reply in reversed(live):
            stack.append((reply, conversation, next_role))


def _name(node: dict) -> str:
    """How an error names a message: its id, cut short, or `None`."""
    message_id = node.get("message_id")
    return message_id if isinstance(message_id, str) and len(message_id) <= 60 else shown(message_id)


def _check_thread(source: RowFile, line: int, name: str, conversation: list[dict[str, str]]) -> None:
    limits = source.limits
    if len(conversation) > limits.turns:
        source.fail(
            line,
            f"message {name} ends a thread of {len(conversation):,} turns, more than the limit of "
            f"{limits.turns:,}",
        )
    if len(conversation[-1]["content"]) > limits.turn_chars:
        source.fail(
            line,
            f"text of message {name} has {len(conversation[-1]['content']):,} characters, more than the "
            f"limit of {limits.turn_chars:,} for a turn",
        )


def _item(
    source: RowFile,
    line: int,
    node: dict,
    conversation: list[dict[str, str]],
    replies: list[dict],
    line_of: LineOf,
) -> ItemRecord:
    if node.get("message_id") is not None:
        external_id = fields.identifier(source, line, node["message_id"], "message_id")
    else:
        external_id = conversation_key(conversation)
    answers = []
    index_of: dict[str, int] = {}
    ranked: list[tuple[int, int]] = []
    for index, reply in enumerate(replies):
        reply_line = line_of(reply)
        role = reply.get("role")
        name = _name(reply)
        if not isinstance(role, str) or role not in OASST_ROLES:
            source.fail(reply_line, f"message {name} has unknown role {shown(role)}")
        if role != "assistant":
            source.fail(reply_line, f"message {name} replies to a prompter message but is not an assistant")
        text = fields.required_string(source, reply_line, reply, "text", f"text of message {name}")
        if reply.get("message_id") is not None:
            answer_id = fields.identifier(source, reply_line, reply["message_id"], "message_id")
            index_of[answer_id] = index
        else:
            answer_id = answer_key(external_id, text)
        model_name = fields.optional_string(
            source, reply_line, reply.get("model_name"), "model_name", fields.MAX_MODEL_NAME
        )
        answers.append(AnswerRecord(text=text, external_id=answer_id, model_name=model_name))
        rank = reply.get("rank")
        if rank is not None:
            if not isinstance(rank, int) or isinstance(rank, bool) or rank < 0:
                source.fail(
                    reply_line, f"rank must be a whole number from 0 (best) or null, not {shown(rank)}"
                )
            ranked.append((rank, index))
    fields.check_answers(source, line, answers)

    rankings = []
    if len(ranked) >= 2:
        groups: dict[int, list[int]] = {}
        for rank, index in sorted(ranked):
            groups.setdefault(rank, []).append(index)
        rankings.append(RankingRecord(order=tuple(tuple(group) for group in groups.values())))
    rankings.extend(_user_rankings(source, line, node, index_of))
    return ItemRecord(
        line=line, external_id=external_id, conversation=conversation, answers=answers, rankings=rankings
    )


def _user_rankings(source: RowFile, line: int, node: dict, index_of: dict[str, int]) -> list[RankingRecord]:
    """`events.ranking` on a prompter message: each user's own order of its replies, best first."""
    events = node.get("events")
    if events is None:
        return []
    if not isinstance(events, dict):
        source.fail(line, f"events must be an object, not {type_name(events)}")
    ranking_events = events.get("ranking") or []
    if not isinstance(ranking_events, list):
        source.fail(line, f"events.ranking must be a list, not {type_name(ranking_events)}")
    rankings = []
    users_seen = set()
    for event in ranking_events:
        if not isinstance(event, dict):
            source.fail(line, f"an events.ranking entry must be an object, not {type_name(event)}")
        if event.get("user_id") is None:
            continue  # without a user id a ranking cannot be told apart from the others
        user_id = fields.identifier(source, line, event["user_id"], "events.ranking user_id")
        if user_id in users_seen:
            continue  # one user counts once
        users_seen.add(user_id)
        ranked_ids = event.get("ranked_message_ids")
        if not isinstance(ranked_ids, list):
            source.fail(line, f"events.ranking of user {user_id} needs ranked_message_ids as a list")
        order = []
        for raw_id in ranked_ids:
            message_id = fields.identifier(
                source, line, raw_id, f"events.ranking of user {user_id}: a message id"
            )
            if message_id in index_of:
                if (index_of[message_id],) in order:
                    source.fail(line, f"events.ranking of user {user_id} names {shown(raw_id)} twice")
                order.append((index_of[message_id],))
            elif not _is_reply_of(node, message_id):
                source.fail(
                    line,
                    f"events.ranking of user {user_id} names {shown(raw_id)}, not a reply of this message",
                )
        not_rankable = fields.flag(source, line, event.get("not_rankable"), "not_rankable")
        # Replies deleted since are left out; an order of fewer than two says nothing.
        if len(order) >= 2 or not_rankable:
            rankings.append(
                RankingRecord(order=tuple(order), external_annotator=user_id, not_rankable=not_rankable)
            )
    return rankings


def _is_reply_of(node: dict, message_id: str) -> bool:
    replies = node.get("replies") or []
    return any(
        isinstance(reply, dict)
        and reply.get("message_id") is not None
        and str(reply["message_id"]) == message_id
        for reply in replies
    )
