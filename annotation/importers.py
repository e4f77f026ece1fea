"""Reading the preference files people already hold: format detection, parsing and validation.

Plain Python, no Django: a parser streams a `.jsonl` / `.jsonl.gz` file one line at a time and
yields `ImportedItem` records that remember their line, so that the service writing them
(`annotation.imports`) can name the line that is wrong. Shapes: /work/shared/FORMATS.md ("In").

External ids make re-imports idempotent: an item is the Open-Assistant prompter message id, the
ranking row's `id`, or else a hash of its conversation; an answer is the Open-Assistant message id,
the answer's `id`, or else a hash of its item's id and its text.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from tqdm import tqdm

from preferences.hh import ANSWER_MARKER, hh_turns

logger = logging.getLogger(__name__)

FORMATS = ("oasst-tree", "oasst-messages", "rankings", "pairs")
ROLES = ("system", "user", "assistant")
OASST_ROLES = {"prompter": "user", "assistant": "assistant"}
# The database columns' limits (Item/Answer.external_id, Answer.model_name).
MAX_EXTERNAL_ID = 255
MAX_MODEL_NAME = 200
GZIP_MAGIC = b"\x1f\x8b"
# What a message-row parser keeps of each row until its tree is complete (texts, not labels/detoxify).
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


class ImportFailed(Exception):
    """A file that cannot be imported; its str is `FILE:LINE: what is wrong`."""

    def __init__(self, file: str, line: int, message: str) -> None:
        super().__init__(f"{file}:{line}: {message}")
        self.file = file
        self.line = line
        self.message = message


@dataclass(frozen=True)
class ImportedAnswer:
    text: str
    external_id: str
    model_name: str = ""


@dataclass(frozen=True)
class ImportedRanking:
    """Best first; each tie group holds indices into its record's `answers`."""

    order: tuple[tuple[int, ...], ...]
    external_annotator: str = ""
    not_rankable: bool = False


@dataclass
class ImportedItem:
    """One rankable conversation read from a file, with its answers and any rankings it carried."""

    line: int
    external_id: str
    conversation: list[dict[str, str]]
    answers: list[ImportedAnswer]
    rankings: list[ImportedRanking] = field(default_factory=list)


def conversation_key(conversation: list[dict[str, str]]) -> str:
    """A stable external id for an item that has none: the hash of its conversation."""
    canonical = json.dumps(conversation, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def answer_key(item_external_id: str, text: str) -> str:
    """A stable external id for an answer that has none: the hash of its item's id and its text."""
    return "sha256:" + hashlib.sha256(f"{item_external_id}\x00{text}".encode()).hexdigest()


def pair_annotator(chosen_external_id: str, rejected_external_id: str) -> str:
    """The `external_annotator` of an imported pair, so each chosen>rejected pair of an item is kept once."""
    digest = hashlib.sha256(f"{chosen_external_id}\x00{rejected_external_id}".encode()).hexdigest()
    return "pair:" + digest[:32]


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


class JsonLines:
    """A `.jsonl` or gzip-compressed `.jsonl` file, read one line at a time however large it is."""

    def __init__(self, path: Path, *, name: str | None = None, progress: bool = False) -> None:
        self.path = Path(path)
        self.name = name or self.path.name
        self.progress = progress
        self.sha256 = ""
        self.lines_read = 0

    def fail(self, line: int, message: str) -> NoReturn:
        raise ImportFailed(self.name, line, message)

    def rows(self, *, description: str = "", progress: bool = True) -> Iterator[tuple[int, dict[str, Any]]]:
        """Yield (line number, object) for every non-blank line; bad JSON stops with its line."""
        with open(self.path, "rb") as raw:
            compressed = raw.read(2) == GZIP_MAGIC
            raw.seek(0)
            size = self.path.stat().st_size
            bar = (
                tqdm(total=size, unit="B", unit_scale=True, desc=description or self.name, file=sys.stderr)
                if self.progress and progress
                else None
            )
            tally = _TallyingReader(raw, bar)
            stream = gzip.GzipFile(fileobj=tally, mode="rb") if compressed else io.BufferedReader(tally)
            number = 0
            try:
                while True:
                    try:
                        line = stream.readline()
                    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
                        self.fail(number + 1, f"the gzip data is damaged ({exc or 'truncated'})")
                    if not line:
                        break
                    number += 1
                    text = self._decode(number, line)
                    if not text.strip():
                        continue
                    try:
                        row = json.loads(text)
                    except json.JSONDecodeError as exc:
                        self.fail(number, f"not valid JSON: {exc.msg} at column {exc.colno}")
                    if not isinstance(row, dict):
                        self.fail(number, f"expected a JSON object, got {_type_name(row)}")
                    yield number, row
                self.sha256 = tally.sha256.hexdigest()
                self.lines_read = number
            finally:
                if bar is not None:
                    bar.close()

    def _decode(self, number: int, line: bytes) -> str:
        try:
            return line.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            self.fail(number, f"not valid UTF-8 (byte {exc.start + 1})")


def detect_format(source: JsonLines) -> str:
    """Tell the format of a file from its first row."""
    for line, row in source.rows(progress=False):
        if "message_tree_id" in row and isinstance(row.get("prompt"), dict):
            return "oasst-tree"
        if "message_id" in row and "role" in row:
            return "oasst-messages"
        if "chosen" in row and "rejected" in row:
            return "pairs"
        if "answers" in row:
            return "rankings"
        keys = ", ".join(sorted(row)[:8]) or "none"
        source.fail(
            line,
            f"cannot tell the format from the first row (fields: {keys}); expected an Open-Assistant "
            "tree or message, a ranking row with `answers`, or a pair with `chosen` and `rejected`",
        )
    source.fail(1, "the file holds no rows")


def parse(source: JsonLines, format: str) -> Iterator[ImportedItem]:
    """Yield the items of a file in one of `FORMATS`, validating as it goes."""
    if format == "oasst-tree":
        return _oasst_tree_items(source)
    if format == "oasst-messages":
        return _oasst_message_items(source)
    if format == "rankings":
        return _ranking_row_items(source)
    if format == "pairs":
        return _pair_items(source)
    raise ValueError(f"unknown import format {format!r}; expected one of {', '.join(FORMATS)}")


# Field checks shared by the formats; each names the field and the line it came from.


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), f"a {type(value).__name__}"
    )


def _string(source: JsonLines, line: int, value: Any, what: str) -> str:
    if not isinstance(value, str):
        source.fail(line, f"{what} must be a string, not {_type_name(value)}")
    if "\x00" in value:
        source.fail(line, f"{what} contains a NUL character, which the database cannot store")
    return value


def _required_string(source: JsonLines, line: int, row: dict, key: str, what: str | None = None) -> str:
    if key not in row:
        source.fail(line, f"{what or key} is missing")
    return _string(source, line, row[key], what or key)


def _optional_string(source: JsonLines, line: int, value: Any, what: str, max_length: int) -> str:
    if value is None:
        return ""
    text = _string(source, line, value, what)
    if len(text) > max_length:
        source.fail(line, f"{what} is longer than {max_length} characters")
    return text


def _identifier(source: JsonLines, line: int, value: Any, what: str) -> str:
    """An external id: a non-empty string or an integer."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    text = _optional_string(source, line, value, what, MAX_EXTERNAL_ID)
    if not text.strip():
        source.fail(line, f"{what} must be a non-empty string")
    return text


def _turns(source: JsonLines, line: int, value: Any, what: str) -> list[dict[str, str]]:
    if not isinstance(value, list):
        source.fail(line, f"{what} must be a list of turns, not {_type_name(value)}")
    turns = []
    for index, turn in enumerate(value):
        if not isinstance(turn, dict):
            source.fail(line, f"{what}[{index}] must be an object with role and content")
        role = turn.get("role")
        if role not in ROLES:
            source.fail(
                line, f"{what}[{index}] has unknown role {role!r} (expected one of {', '.join(ROLES)})"
            )
        content = _required_string(source, line, turn, "content", f"{what}[{index}].content")
        turns.append({"role": role, "content": content})
    return turns


def _check_conversation(source: JsonLines, line: int, conversation: list[dict[str, str]], what: str) -> None:
    if not conversation:
        source.fail(line, f"{what} is empty")
    if conversation[-1]["role"] != "user":
        source.fail(line, f"{what} must end with a user turn, the one the answers reply to")


def _order(source: JsonLines, line: int, value: Any, answer_count: int) -> tuple[tuple[int, ...], ...]:
    """A ranking as indices best first, where a nested list is a tie group: `[[0, 2], 1]`."""
    if not isinstance(value, list):
        source.fail(line, f"ranking must be a list of answer indices, not {_type_name(value)}")
    seen: set[int] = set()
    groups = []
    for element in value:
        group = element if isinstance(element, list) else [element]
        if not group:
            source.fail(line, "ranking has an empty tie group")
        for index in group:
            if not isinstance(index, int) or isinstance(index, bool):
                source.fail(line, f"ranking must hold answer indices (integers), not {_type_name(index)}")
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
    if len(seen) < 2:
        source.fail(line, "ranking must name at least two answers")
    return tuple(groups)


def _ids_to_indices(source: JsonLines, line: int, value: Any, answer_ids: list[str]) -> Any:
    """A ranking that names answers by id (`[[12, 14], 13]`) as one by position in `answers`."""
    if not isinstance(value, list):
        return value  # _order reports the shape error
    position = {answer_id: index for index, answer_id in enumerate(answer_ids)}

    def index_of(answer_id: Any) -> int:
        if isinstance(answer_id, bool) or str(answer_id) not in position:
            source.fail(line, f"ranking names answer id {answer_id!r}, which is not among the row's answers")
        return position[str(answer_id)]

    return [
        [index_of(member) for member in element] if isinstance(element, list) else index_of(element)
        for element in value
    ]


def _distinct_answers(source: JsonLines, line: int, answers: list[ImportedAnswer]) -> None:
    first_index: dict[str, int] = {}
    for index, answer in enumerate(answers):
        if answer.external_id in first_index:
            source.fail(
                line,
                f"answers {first_index[answer.external_id]} and {index} are the same (same id or text)",
            )
        first_index[answer.external_id] = index


# Format 3: plain ranking rows.


def _ranking_row_items(source: JsonLines) -> Iterator[ImportedItem]:
    for line, row in source.rows(description=source.name):
        yield _ranking_row_item(source, line, row)


def _ranking_row_item(source: JsonLines, line: int, row: dict[str, Any]) -> ImportedItem:
    if row.get("conversation") is not None:
        conversation = _turns(source, line, row["conversation"], "conversation")
    elif row.get("prompt") is not None:
        conversation = [{"role": "user", "content": _string(source, line, row["prompt"], "prompt")}]
    else:
        source.fail(line, "a ranking row needs a `prompt` or a `conversation`")
    _check_conversation(source, line, conversation, "conversation")
    if row.get("id") is not None:
        external_id = _identifier(source, line, row["id"], "id")
    else:
        external_id = conversation_key(conversation)

    raw_answers = row.get("answers")
    if raw_answers is None:
        source.fail(line, "answers is missing")
    if not isinstance(raw_answers, list):
        source.fail(line, f"answers must be a list, not {_type_name(raw_answers)}")
    if len(raw_answers) < 2:
        source.fail(line, f"an item needs at least two answers to rank, this row has {len(raw_answers)}")
    answers = []
    for index, raw in enumerate(raw_answers):
        what = f"answers[{index}]"
        if isinstance(raw, str):
            raw = {"text": raw}
        if not isinstance(raw, dict):
            source.fail(line, f"{what} must be a string or an object with `text`, not {_type_name(raw)}")
        text = _required_string(source, line, raw, "text", f"{what}.text")
        model = raw.get("model", raw.get("model_name"))
        model_name = _optional_string(source, line, model, f"{what}.model", MAX_MODEL_NAME)
        if raw.get("id") is not None:
            answer_id = _identifier(source, line, raw["id"], f"{what}.id")
        else:
            answer_id = answer_key(external_id, text)
        answers.append(ImportedAnswer(text=text, external_id=answer_id, model_name=model_name))
    _distinct_answers(source, line, answers)

    rankings = []
    if row.get("ranking") is not None:
        not_rankable = row.get("not_rankable") or False
        if not isinstance(not_rankable, bool):
            source.fail(line, f"not_rankable must be true or false, not {_type_name(not_rankable)}")
        annotator = _optional_string(source, line, row.get("annotator"), "annotator", MAX_EXTERNAL_ID)
        ranking = row["ranking"]
        if all(isinstance(raw, dict) and raw.get("id") is not None for raw in raw_answers):
            # Answers that carry ids (as in our own `rankings` export) are ranked by id, not by position.
            ranking = _ids_to_indices(source, line, ranking, [str(raw["id"]) for raw in raw_answers])
        order = _order(source, line, ranking, len(answers))
        rankings.append(ImportedRanking(order=order, external_annotator=annotator, not_rankable=not_rankable))
    return ImportedItem(
        line=line, external_id=external_id, conversation=conversation, answers=answers, rankings=rankings
    )


# Format 4: pairwise rows (TRL explicit prompt, conversational, Anthropic HH implicit prompt).


def _pair_items(source: JsonLines) -> Iterator[ImportedItem]:
    for line, row in source.rows(description=source.name):
        item = _pair_item(source, line, row)
        # A pair whose two sides are the same text states no preference (Anthropic HH has a few).
        if item is None:
            logger.warning("%s:%d: chosen and rejected are the same answer; row skipped", source.name, line)
        else:
            yield item


def _split_hh(source: JsonLines, line: int, text: str, what: str) -> tuple[str, str]:
    """Cut HH text at its last `\\n\\nAssistant:` into (the conversation before it, the answer after it)."""
    cut = text.rfind(ANSWER_MARKER)
    if cut < 0:
        source.fail(line, f'{what} has no "\\n\\nAssistant:" turn to take the answer from')
    return text[:cut], text[cut + len(ANSWER_MARKER) :].strip()


def _pair_item(source: JsonLines, line: int, row: dict[str, Any]) -> ImportedItem | None:
    for key in ("chosen", "rejected"):
        if key not in row:
            source.fail(line, f"{key} is missing")
    chosen, rejected, prompt = row["chosen"], row["rejected"], row.get("prompt")

    if isinstance(chosen, str) and isinstance(rejected, str):
        _string(source, line, chosen, "chosen")
        _string(source, line, rejected, "rejected")
        if prompt is None:
            prefix, chosen_text = _split_hh(source, line, chosen, "chosen")
            rejected_prefix, rejected_text = _split_hh(source, line, rejected, "rejected")
            if prefix != rejected_prefix:
                source.fail(line, 'chosen and rejected differ before their last "\\n\\nAssistant:"')
            if "\n\nHuman:" not in prefix:
                source.fail(line, 'chosen has no "\\n\\nHuman:" turn before its answer')
            conversation = hh_turns(prefix)
        elif isinstance(prompt, str):
            _string(source, line, prompt, "prompt")
            if "\n\nHuman:" in prompt:
                # TRL's explicit-prompt copy of Anthropic HH keeps the markers in the prompt.
                conversation = hh_turns(prompt)  # its closing empty Assistant: turn is dropped
                chosen_text, rejected_text = chosen.strip(), rejected.strip()
            else:
                conversation = [{"role": "user", "content": prompt}]
                chosen_text, rejected_text = chosen, rejected
        else:
            source.fail(
                line, f"prompt must be a string when chosen and rejected are, not {_type_name(prompt)}"
            )
    elif isinstance(chosen, list) and isinstance(rejected, list):
        if prompt is None:
            prompt_turns = []
        elif isinstance(prompt, str):
            prompt_turns = [{"role": "user", "content": _string(source, line, prompt, "prompt")}]
        else:
            prompt_turns = _turns(source, line, prompt, "prompt")
        chosen_turns = _turns(source, line, chosen, "chosen")
        rejected_turns = _turns(source, line, rejected, "rejected")
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
            f"not {_type_name(chosen)} and {_type_name(rejected)}",
        )

    _check_conversation(source, line, conversation, "the prompt")
    if chosen_text == rejected_text:
        return None
    external_id = conversation_key(conversation)
    chosen_answer = ImportedAnswer(text=chosen_text, external_id=answer_key(external_id, chosen_text))
    rejected_answer = ImportedAnswer(text=rejected_text, external_id=answer_key(external_id, rejected_text))
    ranking = ImportedRanking(
        order=((0,), (1,)),
        external_annotator=pair_annotator(chosen_answer.external_id, rejected_answer.external_id),
    )
    return ImportedItem(
        line=line,
        external_id=external_id,
        conversation=conversation,
        answers=[chosen_answer, rejected_answer],
        rankings=[ranking],
    )


# Formats 1 and 2: Open-Assistant trees, nested or as message rows.


def _oasst_tree_items(source: JsonLines) -> Iterator[ImportedItem]:
    for line, row in source.rows(description=source.name):
        if "prompt" not in row:
            source.fail(line, "prompt is missing (the tree's first message)")
        if row["prompt"] is None:  # the export schema allows a tree without messages
            continue
        yield from _oasst_items(source, row["prompt"], lambda node, line=line: line)


def _oasst_message_items(source: JsonLines) -> Iterator[ImportedItem]:
    """Rebuild trees from message rows in two passes, holding only the trees not yet complete.

    The first pass keeps, per tree, the line of its last row (a few dozen bytes per tree). The second
    keeps each tree's rows until that line and then lets them go. Exports written tree by tree hold
    one tree at a time; a file whose trees are interleaved holds every tree open at once, so its
    memory grows with how far apart a tree's first and last rows lie.
    """
    last_line: dict[str, int] = {}
    for line, row in source.rows(description=f"{source.name} (indexing trees)"):
        tree_id = _required_string(source, line, row, "message_tree_id")
        _required_string(source, line, row, "message_id")
        last_line[tree_id] = line

    open_trees: dict[str, list[dict[str, Any]]] = {}
    for line, row in source.rows(description=f"{source.name} (importing)"):
        tree_id = row.get("message_tree_id")
        if last_line.get(tree_id, 0) < line:
            source.fail(line, "the file changed while it was read")
        node = {key: row[key] for key in OASST_KEPT_FIELDS if key in row}
        node["_line"] = line
        open_trees.setdefault(tree_id, []).append(node)
        if last_line[tree_id] == line:
            root = _oasst_tree_from_rows(source, tree_id, open_trees.pop(tree_id))
            yield from _oasst_items(source, root, lambda node: node["_line"])


def _oasst_tree_from_rows(source: JsonLines, tree_id: str, nodes: list[dict[str, Any]]) -> dict[str, Any]:
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
        elif parent_id in by_id:
            by_id[parent_id]["replies"].append(node)
        else:
            source.fail(node["_line"], f"parent {parent_id!r} is not a message of tree {tree_id}")
    if len(roots) != 1:
        source.fail(nodes[0]["_line"], f"tree {tree_id} has {len(roots)} messages without a parent, not one")
    return roots[0]


def _oasst_items(source: JsonLines, root: Any, line_of) -> Iterator[ImportedItem]:
    """Every prompter message with two or more live assistant replies, at any depth, becomes an item.

    A deleted message is dropped with everything below it: a thread that runs through it is no
    context anyone should rank answers in.
    """
    stack: list[tuple[Any, list[dict[str, str]], str | None]] = [(root, [], None)]
    while stack:
        node, thread, expected_role = stack.pop()
        if not isinstance(node, dict):
            source.fail(line_of(root), f"a message must be an object, not {_type_name(node)}")
        line = line_of(node)
        if _oasst_flag(source, line, node, "deleted"):
            continue
        role = node.get("role")
        if role not in OASST_ROLES:
            source.fail(
                line,
                f"message {node.get('message_id')} has unknown role {role!r} (expected prompter, assistant)",
            )
        if expected_role is not None and role != expected_role:
            # Only two roles exist, so a wrong one means the same role twice in a row.
            source.fail(
                line, f"message {node.get('message_id')} has the role of the message it replies to ({role})"
            )
        if expected_role is None and role != "prompter":
            source.fail(line, "a tree must start with a prompter message")
        text = _required_string(source, line, node, "text", f"text of message {node.get('message_id')}")
        conversation = [*thread, {"role": OASST_ROLES[role], "content": text}]
        replies = node.get("replies") or []
        if not isinstance(replies, list):
            source.fail(line, f"replies must be a list, not {_type_name(replies)}")
        for reply in replies:
            if not isinstance(reply, dict):
                source.fail(line, f"replies must hold message objects, not {_type_name(reply)}")
        live = [reply for reply in replies if not _oasst_flag(source, line_of(reply), reply, "deleted")]
        if role == "prompter" and len(live) >= 2:
            yield _oasst_item(source, line, node, conversation, live, line_of)
        next_role = "assistant" if role == "prompter" else "prompter"
        for reply in reversed(live):
            stack.append((reply, conversation, next_role))


def _oasst_flag(source: JsonLines, line: int, node: dict, key: str) -> bool:
    value = node.get(key)
    if value is not None and not isinstance(value, bool):
        source.fail(line, f"{key} must be true, false or null, not {_type_name(value)}")
    return bool(value)


def _oasst_item(
    source: JsonLines, line: int, node: dict, conversation: list[dict[str, str]], replies: list[dict], line_of
) -> ImportedItem:
    if node.get("message_id") is not None:
        external_id = _identifier(source, line, node["message_id"], "message_id")
    else:
        external_id = conversation_key(conversation)
    answers = []
    index_of: dict[str, int] = {}
    ranked: list[tuple[int, int]] = []
    for index, reply in enumerate(replies):
        reply_line = line_of(reply)
        if reply.get("role") not in OASST_ROLES:
            source.fail(
                reply_line, f"message {reply.get('message_id')} has unknown role {reply.get('role')!r}"
            )
        if reply.get("role") != "assistant":
            source.fail(
                reply_line,
                f"message {reply.get('message_id')} replies to a prompter message but is not an assistant",
            )
        text = _required_string(
            source, reply_line, reply, "text", f"text of message {reply.get('message_id')}"
        )
        if reply.get("message_id") is not None:
            answer_id = _identifier(source, reply_line, reply["message_id"], "message_id")
            index_of[answer_id] = index
        else:
            answer_id = answer_key(external_id, text)
        model_name = _optional_string(
            source, reply_line, reply.get("model_name"), "model_name", MAX_MODEL_NAME
        )
        answers.append(ImportedAnswer(text=text, external_id=answer_id, model_name=model_name))
        rank = reply.get("rank")
        if rank is not None:
            if not isinstance(rank, int) or isinstance(rank, bool) or rank < 0:
                source.fail(reply_line, f"rank must be a whole number from 0 (best) or null, not {rank!r}")
            ranked.append((rank, index))
    _distinct_answers(source, line, answers)

    rankings = []
    if len(ranked) >= 2:
        groups: dict[int, list[int]] = {}
        for rank, index in sorted(ranked):
            groups.setdefault(rank, []).append(index)
        rankings.append(ImportedRanking(order=tuple(tuple(group) for group in groups.values())))
    rankings.extend(_oasst_user_rankings(source, line, node, index_of))
    return ImportedItem(
        line=line, external_id=external_id, conversation=conversation, answers=answers, rankings=rankings
    )


def _oasst_user_rankings(
    source: JsonLines, line: int, node: dict, index_of: dict[str, int]
) -> list[ImportedRanking]:
    """`events.ranking` on a prompter message: each user's own order of its replies, best first."""
    events = node.get("events")
    if events is None:
        return []
    if not isinstance(events, dict):
        source.fail(line, f"events must be an object, not {_type_name(events)}")
    ranking_events = events.get("ranking") or []
    if not isinstance(ranking_events, list):
        source.fail(line, f"events.ranking must be a list, not {_type_name(ranking_events)}")
    rankings = []
    users_seen = set()
    for event in ranking_events:
        if not isinstance(event, dict):
            source.fail(line, f"an events.ranking entry must be an object, not {_type_name(event)}")
        user_id = event.get("user_id")
        # Without a user id a ranking cannot be told apart from the others; one user counts once.
        if user_id is None or user_id in users_seen:
            continue
        user_id = _identifier(source, line, user_id, "events.ranking user_id")
        users_seen.add(user_id)
        ranked_ids = event.get("ranked_message_ids")
        if not isinstance(ranked_ids, list):
            source.fail(line, f"events.ranking of user {user_id} needs ranked_message_ids as a list")
        order = []
        for message_id in ranked_ids:
            if message_id in index_of:
                if (index_of[message_id],) in order:
                    source.fail(line, f"events.ranking of user {user_id} names {message_id!r} twice")
                order.append((index_of[message_id],))
            elif not _is_reply_of(node, message_id):
                source.fail(
                    line,
                    f"events.ranking of user {user_id} names {message_id!r}, not a reply of this message",
                )
        not_rankable = event.get("not_rankable") or False
        if not isinstance(not_rankable, bool):
            source.fail(line, f"not_rankable must be true, false or null, not {_type_name(not_rankable)}")
        # Replies deleted since are left out; an order of fewer than two says nothing.
        if len(order) >= 2 or not_rankable:
            rankings.append(
                ImportedRanking(order=tuple(order), external_annotator=user_id, not_rankable=not_rankable)
            )
    return rankings


def _is_reply_of(node: dict, message_id: Any) -> bool:
    replies = node.get("replies") or []
    return any(isinstance(reply, dict) and reply.get("message_id") == message_id for reply in replies)
