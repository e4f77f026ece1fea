"""Training groups: the unit the engine trains on, built from the items `preferences.readers` reads.

A group is one conversation, its candidate answers and the preference pairs among them. Each answer is
forwarded once per step however many pairs it appears in, which is where the K-wise speed-up comes from.
Every file shape is read by the same readers the importer uses, so a file means the same items to both.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from preferences.conversations import Message
from preferences.pairs import ranking_pairs
from preferences.readers import FORMAT_ALIASES, RowFile, file_format, read_items
from preferences.readers import FORMATS as READER_FORMATS
from preferences.readers.files import RowList
from preferences.records import ItemRecord

log = logging.getLogger(__name__)

# What `--format` accepts: the readers' formats, and the names of our export shapes they read.
FORMATS = ("auto", *READER_FORMATS, *FORMAT_ALIASES)


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
    # A margin per pair (aligned with `pairs`) where the file states one; None when no pair has one.
    margins: list[float] | None = None
    # Only when read for evaluation (`read_groups(..., slices=True)`): every ranking the pairs came from,
    # in the order of `pairs`, with who gave it and its row's tags; and each answer's flag labels.
    rankings_read: list[RankingRead] | None = None
    flags: dict[int, list[str]] = field(default_factory=dict)

    @property
    def answer_texts(self) -> list[str]:
        """The answers' texts in index order."""
        return [a["text"] for a in self.answers]


@dataclass
class RankingRead:
    """One ranking of a group as a file gave it: tie groups of answer indices, best first, and its source.

    `tags` are the row's fields that evaluation slices pairs by: "subset" (RewardBench's field, or the one
    `subset_field` names) and "import_batch" (written by the web side into a run's evaluation split).
    """

    annotator: str
    order: list[list[int]]
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class ReadReport:
    """What a reader did with every input row, so that nothing is dropped silently."""

    rows: int = 0
    groups: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        """Count one row left out for `reason`."""
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


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


def read_groups(
    path: str | Path,
    fmt: str = "auto",
    report: ReadReport | None = None,
    *,
    keep_unranked: bool = False,
    slices: bool = False,
    subset_field: str = "subset",
) -> list[Group]:
    """Read a preference file of any supported shape into groups (rows of one item or prompt merged).

    With `slices` (evaluation files), each group also keeps its rankings with their annotators and row tags
    (`subset_field`, `import_batch`) and its answers' flags, which evaluation breaks figures down by.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    source = _TaggedRowFile(path, subset_field=subset_field) if slices else RowFile(path)
    return _read(source, fmt, report, keep_unranked)


def groups_from_records(
    records: Iterable[dict[str, Any]],
    fmt: str = "auto",
    report: ReadReport | None = None,
    *,
    keep_unranked: bool = False,
    slices: bool = False,
    subset_field: str = "subset",
) -> list[Group]:
    """Build groups from in-memory rows (the export shapes, or dicts the Django side builds the same way).

    With `keep_unranked` (for scoring), rows without a usable ranking still add their answers, and items
    without any pair are kept with no pairs. `slices` as in `read_groups`.
    """
    source = _TaggedRowList(records, subset_field=subset_field) if slices else RowList(records)
    return _read(source, fmt, report, keep_unranked)


# What one row may add to the slices: the web side's exports stay far below these.
MAX_TAG_CHARS = 200
MAX_FLAG_LABELS = 50


class _NotesTags:
    """A row source that notes, per line, the fields evaluation slices by, as the readers read the rows."""

    subset_field: str
    tags: dict[int, dict[str, str]]
    flags: dict[int, dict[str, list[str]]]

    def _start_noting(self, subset_field: str) -> None:
        self.subset_field = subset_field
        self.tags, self.flags = {}, {}

    def rows(self, **kwargs: Any) -> Iterator[tuple[int, dict[str, Any]]]:
        for line, row in super().rows(**kwargs):  # type: ignore[misc]
            tags = {
                name: _tag(row.get(field))
                for name, field in (("subset", self.subset_field), ("import_batch", "import_batch"))
                if _tag(row.get(field))
            }
            if tags:
                self.tags[line] = tags
            if flags := _row_flags(row.get("flags")):
                self.flags[line] = flags
            yield line, row


class _TaggedRowFile(_NotesTags, RowFile):
    def __init__(self, path: str | Path, *, subset_field: str) -> None:
        super().__init__(path)
        self._start_noting(subset_field)


class _TaggedRowList(_NotesTags, RowList):
    def __init__(self, rows: Iterable[dict[str, Any]], *, subset_field: str) -> None:
        super().__init__(rows)
        self._start_noting(subset_field)


def _tag(value: Any) -> str:
    """A row's tag as text ("" when absent or not a plain value), cut to MAX_TAG_CHARS."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return ""
    return str(value).strip()[:MAX_TAG_CHARS]


def _row_flags(value: Any) -> dict[str, list[str]]:
    """A rankings export's `flags`, {answer id: [labels]} (in Parquet a list of {answer_id, labels})."""
    if isinstance(value, list):
        value = {entry.get("answer_id"): entry.get("labels") for entry in value if isinstance(entry, dict)}
    if not isinstance(value, dict):
        return {}
    flags = {}
    for answer_id, labels in value.items():
        if isinstance(labels, list):
            kept = [_tag(label) for label in labels[:MAX_FLAG_LABELS] if _tag(label)]
            if kept and _tag(answer_id):
                flags[_tag(answer_id)] = kept
    return flags


def _read(source: RowFile, fmt: str, report: ReadReport | None, keep_unranked: bool) -> list[Group]:
    report = report if report is not None else ReadReport()
    format = file_format(source, fmt)
    groups = groups_from_items(
        read_items(source, format),
        report,
        keep_unranked=keep_unranked,
        rankings_are_pairs=format == "pairs",
        noted=source if isinstance(source, _NotesTags) else None,
    )
    report.rows = source.rows_read
    for reason, n in source.skipped.items():
        report.skipped[reason] = report.skipped.get(reason, 0) + n
    for reason, n in report.skipped.items():
        log.warning("left out %d row(s): %s", n, reason)
    return groups


def groups_from_items(
    items: Iterable[ItemRecord],
    report: ReadReport,
    *,
    keep_unranked: bool = False,
    rankings_are_pairs: bool = False,
    noted: _NotesTags | None = None,
) -> list[Group]:
    """Merge items of one key into groups, each answer once, with the pairs of every usable ranking.

    Items read from pair rows state one pair each (`rankings_are_pairs`): their group's ranking is the one
    the pairs add up to, if any. With `noted` (the source that read them, noting tags and flags by line),
    each group keeps where its rankings came from (`Group.rankings_read`, `Group.flags`).
    """
    builders: dict[str, _GroupBuilder] = {}

    def builder_of(item: ItemRecord) -> _GroupBuilder:
        if item.external_id not in builders:
            builders[item.external_id] = _GroupBuilder(
                item.external_id, item.conversation, slices=noted is not None
            )
        return builders[item.external_id]

    for item in items:
        if keep_unranked:  # every answer counts, whatever becomes of the rankings
            builder = builder_of(item)
            for answer in item.answers:
                builder.answer(answer.external_id, answer.text, answer.model_name)
        usable = [ranking for ranking in item.rankings if not ranking.not_rankable]
        if not keep_unranked:
            if not item.rankings:
                report.skip("row without a ranking")
            for _ in range(len(item.rankings) - len(usable)):
                report.skip("marked not_rankable")
        for ranking in usable:
            pairs = pairs_from_ranking(ranking.order)
            if not pairs:
                report.skip("ranking with a single tie group")
                continue
            builder = builder_of(item)
            local = [builder.answer(a.external_id, a.text, a.model_name) for a in item.answers]
            mapped = [[local[i] for i in level] for level in ranking.order]
            builder.pairs.extend((local[better], local[worse]) for better, worse in pairs)
            builder.margins.extend([ranking.margin] * len(pairs))
            if not rankings_are_pairs:
                builder.rankings.append(mapped)
            if noted is not None:
                builder.note(ranking.external_annotator, mapped, noted.tags.get(item.line, {}))
        if noted is not None and item.line in noted.flags and item.external_id in builders:
            builder_of(item).note_flags(noted.flags[item.line])
    groups = []
    for builder in builders.values():
        group = builder.build(keep_unranked)
        if group is None:
            report.skip("item without any preference pair")
        else:
            groups.append(group)
    report.groups = len(groups)
    return groups


class _GroupBuilder:
    """Accumulates the answers and pairs of one item across rows, each answer once."""

    def __init__(self, group_id: str, conversation: list[Message], *, slices: bool = False):
        self.id = group_id
        self.conversation = conversation
        self.answers: list[dict[str, str]] = []
        self.index: dict[str, int] = {}
        self.pairs: list[tuple[int, int]] = []
        self.margins: list[float | None] = []
        self.rankings: list[list[list[int]]] = []
        self.rankings_read: list[RankingRead] | None = [] if slices else None
        self.flags: dict[int, list[str]] = {}

    def note(self, annotator: str, order: list[list[int]], tags: dict[str, str]) -> None:
        """Keep one ranking with who gave it and its row's tags (evaluation reads only)."""
        if self.rankings_read is not None:
            self.rankings_read.append(RankingRead(annotator, order, tags))

    def note_flags(self, flags: dict[str, list[str]]) -> None:
        """Add a row's flags, {answer id: [labels]}, to the answers they name."""
        for answer_id, labels in flags.items():
            if answer_id in self.index:
                known = self.flags.setdefault(self.index[answer_id], [])
                known.extend(label for label in labels if label not in known)

    def answer(self, answer_id: str, text: str, model: str = "") -> int:
        if answer_id not in self.index:
            self.index[answer_id] = len(self.answers)
            entry = {"id": answer_id, "text": text}
            if model:
                entry["model"] = model
            self.answers.append(entry)
        return self.index[answer_id]

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
        # A pair without a stated margin beside pairs with one has margin 0: the plain Bradley-Terry term.
        margins = None
        if any(m is not None for m in self.margins):
            margins = [m or 0.0 for m in self.margins]
        return Group(
            self.id,
            self.conversation,
            self.answers,
            list(self.pairs),
            ranking,
            margins,
            self.rankings_read,
            self.flags,
        )
