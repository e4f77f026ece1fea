"""Readers for every export shape, pair merging, ranking recovery and the deterministic split."""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from preferences.conversations import normalize_conversation
from preferences.hh import hh_turns
from training.reward_model.data import (
    Group,
    ReadReport,
    groups_from_records,
    ranking_from_pairs,
    read_groups,
    split_groups,
)
from training.reward_model.synthetic import pair_records, synthetic_records

RANKINGS_ROW = {
    "item_id": 17,
    "project": "p",
    "conversation": [{"role": "user", "content": "hi"}],
    "answers": [{"id": "a", "text": "A", "model": "m"}, {"id": "b", "text": "B"}, {"id": "c", "text": "C"}],
    "ranking": [["b"], ["a", "c"]],
    "not_rankable": False,
    "flags": {},
    "annotator": "ann-1",
}


def _write_jsonl(path, rows, gz=False):
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    path.write_bytes(gzip.compress(data) if gz else data)


def test_rankings_export_with_ties_and_ids(tmp_path):
    path = tmp_path / "r.jsonl.gz"
    second = {**RANKINGS_ROW, "annotator": "ann-2", "ranking": [["a"], ["b"], ["c"]]}
    skipped = {**RANKINGS_ROW, "item_id": 18, "not_rankable": True}
    _write_jsonl(path, [RANKINGS_ROW, second, skipped], gz=True)
    report = ReadReport()
    groups = read_groups(path, report=report)
    assert len(groups) == 1 and groups[0].id == "17"
    g = groups[0]
    assert [a["id"] for a in g.answers] == ["a", "b", "c"]  # each answer once, whatever the row count
    assert sorted(g.pairs) == sorted([(1, 0), (1, 2), (0, 1), (0, 2), (1, 2)])
    assert g.ranking is None  # two annotators: their pairs train, no single ranking
    assert report.skipped == {"marked not_rankable": 1}


def test_rankings_export_with_integer_answer_ids():
    row = {
        **RANKINGS_ROW,
        "answers": [{"id": 101, "text": "A"}, {"id": 7, "text": "B"}],
        "ranking": [[7], [101]],
    }
    (g,) = groups_from_records([row])
    assert g.pairs == [(1, 0)] and g.ranking == [[1], [0]]


def test_consensus_keeps_ranking_and_plain_rows_accept_nested_ties():
    consensus = {**RANKINGS_ROW, "n_annotators": 3, "agreement": 0.8}
    plain = {"prompt": "q", "answers": ["x", "y", "z"], "ranking": [[0, 2], 1]}
    unranked = {"prompt": "q2", "answers": ["x", "y"]}
    report = ReadReport()
    groups = groups_from_records([consensus, plain, unranked], report=report)
    assert groups[0].ranking == [[1], [0, 2]]
    assert groups[1].ranking == [[0, 2], [1]] and sorted(groups[1].pairs) == [(0, 1), (2, 1)]
    assert report.skipped == {"row without a ranking": 1}


def test_pairs_with_same_prompt_merge_and_answers_are_forwarded_once(tmp_path):
    rows = synthetic_records(3, k=4, seed=3)
    pairs = pair_records(rows)
    for p in pairs:
        p.pop("item_id")  # plain TRL rows: merge by prompt
    path = tmp_path / "pairs.parquet"
    pq.write_table(pa.Table.from_pylist(pairs), path)
    groups = read_groups(path)
    assert len(groups) == 3
    for g, row in zip(groups, rows, strict=True):
        assert len(g.answers) == 4 and len(g.pairs) == 6
        # The pairs export of a full ranking gives the ranking back.
        assert [[g.answers[i]["text"] for i in lv] for lv in g.ranking] == [
            [row["answers"][i]] for i in row["ranking"]
        ]


def test_keep_unranked_keeps_every_answer_of_an_item_once_for_scoring():
    unranked = {**RANKINGS_ROW, "annotator": "ann-2", "ranking": None}
    extra = {
        **RANKINGS_ROW,
        "annotator": "ann-3",
        "answers": [{"id": "a", "text": "A", "model": "m"}, {"id": "d", "text": "D"}],
        "ranking": [],
        "not_rankable": True,
    }
    never_ranked = {"id": "u1", "prompt": "q", "answers": ["x", "y"]}
    rows = [unranked, RANKINGS_ROW, extra, never_ranked]
    report = ReadReport()
    item, never = groups_from_records(rows, report=report, keep_unranked=True)
    assert item.id == "17" and [a["id"] for a in item.answers] == ["a", "b", "c", "d"]
    assert item.pairs == groups_from_records([RANKINGS_ROW])[0].pairs and item.ranking == [[1], [0, 2]]
    assert never.id == "u1" and never.answer_texts == ["x", "y"] and never.pairs == []
    assert report.skipped == {}
    # Training reads the same rows without the unranked ones.
    assert [g.id for g in groups_from_records(rows)] == ["17"]


def test_pairs_chat_and_implicit_hh_prompts():
    chat = {
        "prompt": [{"role": "user", "content": "hello"}],
        "chosen": [{"role": "assistant", "content": "good"}],
        "rejected": [{"role": "assistant", "content": "bad"}],
    }
    hh = {
        "chosen": "\n\nHuman: hi\n\nAssistant: hey\n\nHuman: why?\n\nAssistant: because",
        "rejected": "\n\nHuman: hi\n\nAssistant: hey\n\nHuman: why?\n\nAssistant: no",
    }
    g1, g2 = groups_from_records([chat, hh])
    assert g1.conversation == [{"role": "user", "content": "hello"}] and g1.answer_texts == ["good", "bad"]
    assert g2.conversation == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hey"},
        {"role": "user", "content": "why?"},
    ]
    assert g2.answer_texts == ["because", "no"] and g2.pairs == [(0, 1)] and g2.ranking == [[0], [1]]


def test_hh_parser_and_ranking_recovery():
    assert hh_turns("Human: a\n\nAssistant: b") == [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
    ]
    # The web exporter's multi-turn string prompt (annotation.exports.conversation_prompt_text).
    exported = "\n\nSystem: be brief\n\nHuman: hi\n\nAssistant: hey\n\nHuman: why?\n\nAssistant:"
    assert normalize_conversation(exported) == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hey"},
        {"role": "user", "content": "why?"},
    ]
    assert normalize_conversation("just a question") == [{"role": "user", "content": "just a question"}]
    assert ranking_from_pairs(3, [(0, 1), (0, 2), (1, 2)]) == [[0], [1], [2]]
    assert ranking_from_pairs(3, [(0, 1), (1, 2)]) is None  # not every cross pair: no ranking explains it


def test_split_is_deterministic_by_id():
    groups = groups_from_records(synthetic_records(200, seed=5))
    a_train, a_eval = split_groups(groups, 0.25)
    b_train, b_eval = split_groups(list(reversed(groups)), 0.25)
    assert {g.id for g in a_eval} == {g.id for g in b_eval}
    assert 25 < len(a_eval) < 75 and len(a_train) + len(a_eval) == 200


def test_answers_in_no_pair_are_not_trained_on():
    from training.reward_model.trainer import only_paired_answers

    g = Group("x", [], [{"id": str(i), "text": str(i)} for i in range(4)], [(3, 1)], [[3], [1]])
    slim = only_paired_answers(g)
    assert slim.answer_texts == ["1", "3"] and slim.pairs == [(1, 0)] and slim.ranking == [[1], [0]]


def test_rows_whose_text_holds_unicode_line_separators_read_as_one_row(tmp_path):
    # The exports write JSON with ensure_ascii=False, so U+2028, U+0085 and form feeds reach the file raw.
    row = {**RANKINGS_ROW, "conversation": [{"role": "user", "content": "one\u2028two\x85three\x0cfour"}]}
    text = "\n" + json.dumps(row, ensure_ascii=False) + "\n"
    for name, write in (
        ("rows.jsonl", lambda p: p.write_text(text, encoding="utf-8")),
        ("rows.jsonl.gz", lambda p: p.write_bytes(gzip.compress(text.encode()))),
        (
            "rows.json",
            lambda p: p.write_text(json.dumps([row], ensure_ascii=False, indent=1), encoding="utf-8"),
        ),
    ):
        path = tmp_path / name
        write(path)
        (group,) = read_groups(path)
        assert group.conversation[0]["content"] == "one\u2028two\x85three\x0cfour"
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n" + json.dumps(row) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken.jsonl:3: not valid JSON"):
        read_groups(broken)


def test_the_engine_reads_open_assistant_trees_as_the_importer_does(tmp_path):
    # The same readers serve both sides: a tree's ranks become the group's ranking; a bare root node
    # (no tree wrapper) reads the same.
    root = {
        "message_id": "p1",
        "role": "prompter",
        "text": "Name a colour.",
        "replies": [
            {"message_id": "a1", "role": "assistant", "text": "Blue.", "rank": 1, "replies": []},
            {"message_id": "a2", "role": "assistant", "text": "Red.", "rank": 0, "replies": []},
            {"message_id": "a3", "role": "assistant", "text": "Gone.", "deleted": True, "replies": []},
        ],
    }
    wrapped, bare = tmp_path / "trees.jsonl", tmp_path / "nodes.jsonl"
    _write_jsonl(wrapped, [{"message_tree_id": "p1", "prompt": root}])
    _write_jsonl(bare, [root])

    for path in (wrapped, bare):
        (group,) = read_groups(path)
        assert group.id == "p1" and group.conversation == [{"role": "user", "content": "Name a colour."}]
        assert [a["id"] for a in group.answers] == ["a1", "a2"]
        assert group.pairs == [(1, 0)] and group.ranking == [[1], [0]]


def test_a_malformed_row_stops_the_engine_with_its_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    _write_jsonl(path, [RANKINGS_ROW, {**RANKINGS_ROW, "ranking": [["a"], ["zz"]]}])

    with pytest.raises(ValueError, match=r"bad\.jsonl:2: ranking names answer id 'zz'"):
        read_groups(path)
