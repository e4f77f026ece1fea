"""Preference data: the `Group` unit of training and readers for every export shape we train on.

A group is one conversation, its candidate answers and the preference pairs among them. Each answer is
forwarded once per step however many pairs it appears in, which is where the K-wise speed-up comes from.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from preferences.hh import ANSWER_MARKER, hh_turns
from preferences.pairs import ranking_pairs

log = logging.getLogger(__name__)

Message = dict[str, str]
FORMATS = ("auto", "rankings", "consensus", "plain", "pairs", "pairs-chat")

# Role names of the public formats mapped onto the chat-template vocabulary.
_ROLE_ALIASES = {"prompter": "user", "human": "user", "gpt": "assistant", "bot": "assistant"}


@dataclass
class Group:
    """One conversation, its answers and the ordered preference pairs (better_idx, worse_idx) among them."""

    id: str
    conversation: list[Message]
    answers: list[dict[str, str]]
    pairs: list[tuple[int, int]]
    # Tie groups of answer indices, best first, when the pairs come from (or reduce to) one ranking.
    # Plackett-Luce and best-vs-worst accuracy need it; Bradley-Terry only needs `pairs`.
    ranking: list[list[int]] | None = None

    @property
    def answer_texts(self) -> list[str]:
        """The answers' texts in index order."""
        return [a["text"] for a in self.answers]


@dataclass
class ReadReport:
    """What a reader did with every input row, so that nothing is dropped silently."""

    rows: int = 0
    groups: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        """Count one row left out for `reason`."""
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


def normalize_conversation(conversation: Any) -> list[Message]:
    """Return a list of {"role", "content"} messages from a string or a message list of any common shape."""
    if conversation is None:
        return []
    if isinstance(conversation, str):
        if "\n\nHuman:" in conversation or conversation.startswith(("Human:", "\n\nSystem:")):
            return hh_turns(conversation)
        return [{"role": "user", "content": conversation}]
    out = []
    for m in conversation:
        role = str(m.get("role") or m.get("from") or "user").lower()
        content = m.get("content", m.get("text", m.get("value", "")))
        out.append(
            {"role": _ROLE_ALIASES.get(role, role), "content": "" if content is None else str(content)}
        )
    return out


def pairs_from_ranking(ranking: Sequence[Sequence[int]]) -> list[tuple[int, int]]:
    """Every ordered pair across tie groups (best first); answers tied with each other form no pair."""
    # The exports build their pairs with the same function, so training sees exactly the exported pairs.
    return [(pair.chosen, pair.rejected) for pair in ranking_pairs(ranking)]


def ranking_from_pairs(n_answers: int, pairs: Sequence[tuple[int, int]]) -> list[list[int]] | None:
    """The tie-group ranking whose cross-group pairs are exactly `pairs`; None when no ranking explains them.

    A `pairs` export of a ranking lists every ordered pair, so this recovers the ranking and lets such files
    use Plackett-Luce and best-vs-worst accuracy. Answers in no pair are left out of the ranking.
    """
    pair_set = set(pairs)
    if not pair_set or any(b == w for b, w in pair_set):
        return None
    involved = sorted({i for p in pair_set for i in p})
    wins = {i: sum(1 for b, _ in pair_set if b == i) for i in involved}
    levels: dict[int, list[int]] = {}
    for i in involved:
        levels.setdefault(-wins[i], []).append(i)
    ranking = [levels[k] for k in sorted(levels)]
    if set(pairs_from_ranking(ranking)) != pair_set:
        return None
    return ranking if len(ranking) >= 2 and n_answers >= 2 else None


def split_groups(groups: Sequence[Group], eval_fraction: float, salt: str = "rewardlab") -> tuple[list, list]:
    """Deterministic train/held-out split by group id: the same item always lands on the same side."""
    train, held_out = [], []
    for g in groups:
        digest = hashlib.sha256(f"{salt}:{g.id}".encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2**64
        (held_out if u < eval_fraction else train).append(g)
    return train, held_out


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, recorded in the model metadata to say which data trained it."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def iter_records(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield rows of a .jsonl / .jsonl.gz / .json / .parquet file as dicts."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        yield from table.to_pylist()
        return
    opener = gzip.open if name.endswith(".gz") else open
    # Line by line, split at "\n" only: a JSON string may hold U+2028 and the other characters that
    # str.splitlines() also splits at (the exports write them raw), and a big file is not held twice.
    with opener(path, "rb") as raw:
        first_row = True
        for lineno, raw_line in enumerate(raw, 1):
            line = raw_line.decode("utf-8")
            if not line.strip():
                continue
            if first_row and line.lstrip().startswith("["):  # a JSON array of rows
                yield from json.loads(line + raw.read().decode("utf-8"))
                return
            first_row = False
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not JSON ({exc.msg})") from exc


def detect_format(record: dict[str, Any]) -> str:
    """Name the shape of one row: rankings/consensus, plain ranking rows, pairs or pairs-chat."""
    if "chosen" in record and "rejected" in record:
        return "pairs-chat" if isinstance(record["chosen"], list) else "pairs"
    if "answers" in record:
        answers = record["answers"]
        if "item_id" in record and answers and isinstance(answers[0], dict) and "id" in answers[0]:
            return "consensus" if "n_annotators" in record else "rankings"
        return "plain"
    raise ValueError(f"unrecognised row shape with keys {sorted(record)}")


def read_groups(
    path: str | Path, fmt: str = "auto", report: ReadReport | None = None, *, keep_unranked: bool = False
) -> list[Group]:
    """Read a preference file of any supported shape into groups (rows of one item or prompt merged)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    return groups_from_records(iter_records(path), fmt=fmt, report=report, keep_unranked=keep_unranked)


def groups_from_records(
    records: Iterable[dict[str, Any]],
    fmt: str = "auto",
    report: ReadReport | None = None,
    *,
    keep_unranked: bool = False,
) -> list[Group]:
    """Build groups from in-memory rows (the export shapes, or dicts the Django side builds the same way).

    With `keep_unranked` (for scoring), rows without a usable ranking still add their answers, and items
    without any pair are kept with no pairs.
    """
    report = report if report is not None else ReadReport()
    builders: dict[str, _GroupBuilder] = {}
    for record in records:
        report.rows += 1
        shape = detect_format(record) if fmt == "auto" else fmt
        if shape in ("pairs", "pairs-chat"):
            _add_pair_row(record, builders, report)
        else:
            _add_ranking_row(record, builders, report, keep_unranked)
    groups = []
    for b in builders.values():
        group = b.build(keep_unranked)
        if group is None:
            report.skip("item without any preference pair")
        else:
            groups.append(group)
    report.groups = len(groups)
    for reason, n in report.skipped.items():
        log.warning("left out %d row(s): %s", n, reason)
    return groups


class _GroupBuilder:
    """Accumulates the answers and pairs of one item across rows, de-duplicating answers."""

    def __init__(self, group_id: str, conversation: list[Message]):
        self.id = group_id
        self.conversation = conversation
        self.answers: list[dict[str, str]] = []
        self.index: dict[str, int] = {}
        self.pairs: list[tuple[int, int]] = []
        self.rankings: list[list[list[int]]] = []

    def answer(self, answer_id: str | None, text: str, model: str | None = None) -> int:
        key = answer_id if answer_id is not None else "text:" + text
        if key not in self.index:
            self.index[key] = len(self.answers)
            aid = answer_id if answer_id is not None else hashlib.sha1(text.encode()).hexdigest()[:12]
            entry = {"id": str(aid), "text": text}
            if model:
                entry["model"] = model
            self.answers.append(entry)
        return self.index[key]

    def build(self, keep_unranked: bool = False) -> Group | None:
        if not self.pairs:
            if keep_unranked and self.answers:
                return Group(self.id, self.conversation, self.answers, [])
            return None
        if len(self.rankings) == 1:
            ranking = self.rankings[0]
        elif not self.rankings:
            ranking = ranking_from_pairs(len(self.answers), self.pairs)
        else:  # several annotators: their pairs all train, but no single ranking describes the item
            ranking = None
        return Group(self.id, self.conversation, self.answers, list(self.pairs), ranking)


def _answer_text(answer: Any) -> tuple[str | None, str, str | None]:
    if isinstance(answer, dict):
        aid = answer.get("id")
        return (None if aid is None else str(aid)), str(answer.get("text", "")), answer.get("model")
    return None, str(answer), None


def _normalize_ranking(ranking: Any, n: int, ids: list[str | None]) -> list[list[int]]:
    """Tie groups of answer indices from a ranking of indices or answer ids, flat or nested."""
    id_to_idx = {a: i for i, a in enumerate(ids) if a is not None}
    out, seen = [], set()
    for level in ranking:
        members = level if isinstance(level, list | tuple) else [level]
        idxs = []
        for m in members:
            if id_to_idx:  # answers carry ids (rankings/consensus exports): the ranking names ids
                if str(m) not in id_to_idx:
                    raise ValueError(f"ranking names unknown answer {m!r}")
                i = id_to_idx[str(m)]
            elif isinstance(m, int) or (isinstance(m, str) and m.isdigit()):
                i = int(m)  # plain rows: positions in `answers`
            else:
                raise ValueError(f"ranking names unknown answer {m!r}")
            if not 0 <= i < n or i in seen:
                raise ValueError(f"ranking entry {m!r} is out of range or repeated")
            seen.add(i)
            idxs.append(i)
        if idxs:
            out.append(idxs)
    return out


def _builder_for(
    builders: dict[str, _GroupBuilder], item_id: Any, conversation: list[Message]
) -> _GroupBuilder:
    """The builder of the row's item: by its id, else by its conversation."""
    group_id = str(item_id) if item_id is not None else _conversation_key(conversation)
    if group_id not in builders:
        builders[group_id] = _GroupBuilder(group_id, conversation)
    return builders[group_id]


def _add_ranking_row(
    record: dict, builders: dict[str, _GroupBuilder], report: ReadReport, keep_unranked: bool = False
) -> None:
    not_rankable, ranking_raw = record.get("not_rankable"), record.get("ranking")
    if not keep_unranked and (not_rankable or not ranking_raw):
        report.skip("marked not_rankable" if not_rankable else "row without a ranking")
        return
    conversation = normalize_conversation(record.get("conversation", record.get("prompt")))
    answers = record.get("answers") or []
    parsed = [_answer_text(a) for a in answers]
    item_id = record.get("item_id", record.get("id"))
    if keep_unranked:  # every answer counts, whatever becomes of the ranking
        builder = _builder_for(builders, item_id, conversation)
        for aid, text, model in parsed:
            builder.answer(aid, text, model)
        if not_rankable or not ranking_raw:
            return
    try:
        ranking = _normalize_ranking(ranking_raw, len(parsed), [p[0] for p in parsed])
    except ValueError as exc:
        report.skip(f"invalid ranking ({exc})")
        return
    builder = _builder_for(builders, item_id, conversation)
    local = [builder.answer(aid, text, model) for aid, text, model in parsed]
    mapped = [[local[i] for i in level] for level in ranking]
    new_pairs = pairs_from_ranking(mapped)
    if not new_pairs:
        report.skip("ranking with a single tie group")
        return
    builder.pairs.extend(new_pairs)
    builder.rankings.append(mapped)


def _conversation_key(conversation: list[Message]) -> str:
    payload = json.dumps(conversation, sort_keys=True, ensure_ascii=False)
    return "conv-" + hashlib.sha256(payload.encode()).hexdigest()[:16]


def _split_implicit(chosen: str, rejected: str) -> tuple[str, str, str]:
    """Split HH-style full transcripts into the shared prompt and the two final assistant turns."""
    common = 0
    for a, b in zip(chosen, rejected, strict=False):
        if a != b:
            break
        common += 1
    cut = chosen.rfind(ANSWER_MARKER, 0, common + 1)
    if cut == -1:
        return "", chosen, rejected
    cut += len(ANSWER_MARKER)
    return chosen[:cut], chosen[cut:].strip(), rejected[cut:].strip()


def _add_pair_row(record: dict, builders: dict[str, _GroupBuilder], report: ReadReport) -> None:
    chosen, rejected, prompt = record.get("chosen"), record.get("rejected"), record.get("prompt")
    if chosen is None or rejected is None:
        report.skip("pair row without chosen/rejected")
        return
    if isinstance(chosen, list):  # conversational: the answer is the last assistant message
        chosen_msgs, rejected_msgs = normalize_conversation(chosen), normalize_conversation(rejected)
        conversation = normalize_conversation(prompt) if prompt is not None else chosen_msgs[:-1]
        chosen_text = chosen_msgs[-1]["content"] if chosen_msgs else ""
        rejected_text = rejected_msgs[-1]["content"] if rejected_msgs else ""
    elif prompt is None:
        prompt_text, chosen_text, rejected_text = _split_implicit(str(chosen), str(rejected))
        conversation = normalize_conversation(prompt_text)
    else:
        conversation = normalize_conversation(prompt)
        chosen_text, rejected_text = str(chosen), str(rejected)
    if chosen_text == rejected_text:
        report.skip("pair whose chosen and rejected answers are identical")
        return
    builder = _builder_for(builders, record.get("item_id"), conversation)
    # Answers are identified by text inside one item, so an answer in several pairs is forwarded once.
    b = builder.answer(None, chosen_text)
    w = builder.answer(None, rejected_text)
    builder.pairs.append((b, w))
