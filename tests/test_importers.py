"""Importing the shapes of FORMATS.md: Open-Assistant trees and message rows, ranking rows, pairs."""

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from annotation import imports
from annotation.imports import ImportFailed, import_file
from annotation.models import Answer, ImportBatch, Item, Ranking
from preferences.readers import RowFile, file_format
from tests.conftest import child_process_env
from tests.factories import ItemFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db

# Builders for the files, in the shapes the public exports use.


def write_jsonl(path: Path, rows: list, *, gz: bool = False) -> Path:
    """Write rows (objects, or raw strings for broken lines) one per line."""
    text = "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as out:
            out.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def oa_message(message_id, role, text, *, replies=(), **fields) -> dict:
    """An Open-Assistant node; only the fields given are present (the optional ones may be missing)."""
    return {"message_id": message_id, "role": role, "text": text, **fields, "replies": list(replies)}


def oa_tree(root: dict) -> dict:
    return {"message_tree_id": root["message_id"], "tree_state": "ready_for_export", "prompt": root}


def oa_rows(tree: dict) -> list[dict]:
    """The same tree as flat message rows, linked by parent_id, in depth-first order."""
    rows = []

    def walk(node, parent_id):
        row = {key: value for key, value in node.items() if key != "replies"}
        rows.append({**row, "parent_id": parent_id, "message_tree_id": tree["message_tree_id"]})
        for reply in node.get("replies", []):
            walk(reply, node["message_id"])

    walk(tree["prompt"], None)
    return rows


def rust_tree() -> dict:
    """Two turns deep, with a deleted reply (and a subtree under it), unranked and lone replies."""
    return oa_tree(
        oa_message(
            "p1",
            "prompter",
            "What is Rust?",
            lang="en",
            review_count=3,
            emojis={"+1": 2},
            labels={"spam": {"value": 0.0, "count": 3}},
            events={
                "ranking": [
                    {"user_id": "u1", "ranking": [1, 0], "ranked_message_ids": ["a2", "a1"]},
                    # a7 was deleted after u2 ranked it: it is left out of u2's order.
                    {"user_id": "u2", "ranking": [0, 2, 1], "ranked_message_ids": ["a1", "a7", "a2"]},
                    {"user_id": "u3", "ranking": [], "ranked_message_ids": [], "not_rankable": True},
                ]
            },
            replies=[
                oa_message(
                    "a1",
                    "assistant",
                    "A systems programming language.",
                    rank=0,
                    model_name=None,
                    replies=[
                        oa_message(
                            "p2",
                            "prompter",
                            "And its borrow checker?",
                            replies=[
                                oa_message("a3", "assistant", "It checks lifetimes.", rank=1),
                                oa_message("a4", "assistant", "It enforces ownership rules.", rank=0),
                                oa_message("a5", "assistant", "Deleted answer.", rank=2, deleted=True),
                                oa_message("a6", "assistant", "Unranked answer.", rank=None),
                            ],
                        )
                    ],
                ),
                oa_message(
                    "a2",
                    "assistant",
                    "A game.",
                    rank=1,
                    deleted=False,
                    replies=[
                        oa_message(
                            "p3",
                            "prompter",
                            "Only one reply here",
                            replies=[oa_message("a8", "assistant", "x")],
                        )
                    ],
                ),
                oa_message(
                    "a7",
                    "assistant",
                    "Spam.",
                    rank=2,
                    deleted=True,
                    replies=[
                        oa_message(
                            "p4",
                            "prompter",
                            "Under a deleted message",
                            replies=[oa_message("a9", "assistant", "y"), oa_message("a10", "assistant", "z")],
                        )
                    ],
                ),
            ],
        )
    )


def second_tree() -> dict:
    return oa_tree(
        oa_message(
            "q1",
            "prompter",
            "Name a colour.",
            replies=[
                oa_message("b1", "assistant", "Blue.", rank=0),
                oa_message("b2", "assistant", "Red.", rank=0),
            ],
        )
    )


def snapshot(project) -> dict:
    """What a project holds, by external ids, so two imports can be compared."""
    items = {}
    for item in Item.objects.filter(project=project).prefetch_related("answers", "rankings"):
        external = {answer.pk: answer.external_id for answer in item.answers.all()}
        items[item.external_id] = {
            "conversation": item.conversation,
            "answers": [(a.position, a.external_id, a.text, a.model_name) for a in item.answers.all()],
            "rankings": {
                ranking.external_annotator: (
                    [[external[pk] for pk in group] for group in ranking.order],
                    ranking.not_rankable,
                    ranking.source,
                )
                for ranking in item.rankings.all()
            },
        }
    return items


def database_counts() -> tuple[int, int, int, int]:
    return (
        Item.objects.count(),
        Answer.objects.count(),
        Ranking.objects.count(),
        ImportBatch.objects.count(),
    )


# Open-Assistant.


def test_oasst_tree_export_becomes_one_item_per_prompter_with_two_live_replies(tmp_path):
    project = ProjectFactory()
    path = write_jsonl(tmp_path / "trees.jsonl", [rust_tree(), second_tree()])

    batch = import_file(path=path, project=project)

    assert batch.format == "oasst-tree"
    assert (batch.lines_read, batch.items_created, batch.answers_created) == (2, 3, 7)
    items = snapshot(project)
    assert set(items) == {"p1", "p2", "q1"}  # p3 has one reply, p4 sits under a deleted one
    assert items["p2"]["conversation"] == [
        {"role": "user", "content": "What is Rust?"},
        {"role": "assistant", "content": "A systems programming language."},
        {"role": "user", "content": "And its borrow checker?"},
    ]
    assert [answer[1] for answer in items["p2"]["answers"]] == ["a3", "a4", "a6"]
    # The unranked a6 is an answer, but stays out of the imported ranking.
    assert items["p2"]["rankings"] == {"": ([["a4"], ["a3"]], False, "import")}
    assert items["p1"]["rankings"] == {
        "": ([["a1"], ["a2"]], False, "import"),
        "u1": ([["a2"], ["a1"]], False, "import"),
        "u2": ([["a1"], ["a2"]], False, "import"),
        "u3": ([], True, "import"),
    }
    assert items["q1"]["rankings"][""][0] == [["b1", "b2"]]  # equal ranks are a tie
    assert set(Ranking.objects.values_list("import_batch", flat=True)) == {batch.pk}
    assert not Item.objects.filter(human_ranking_count__gt=0).exists()


def test_oasst_message_rows_give_the_same_items_as_the_trees(tmp_path):
    trees = [rust_tree(), second_tree()]
    from_trees, from_rows = ProjectFactory(), ProjectFactory()
    import_file(path=write_jsonl(tmp_path / "trees.jsonl", trees), project=from_trees)
    rows = [row for tree in trees for row in oa_rows(tree)]

    batch = import_file(path=write_jsonl(tmp_path / "messages.jsonl", rows), project=from_rows)

    assert batch.format == "oasst-messages"
    assert batch.lines_read == len(rows)
    assert snapshot(from_rows) == snapshot(from_trees)


def test_bare_oasst_root_messages_with_nested_replies_import_as_trees(tmp_path):
    # One root prompter message per line, without the tree export's wrapper (no message_tree_id).
    trees = [rust_tree(), second_tree()]
    from_trees, from_nodes = ProjectFactory(), ProjectFactory()
    import_file(path=write_jsonl(tmp_path / "trees.jsonl", trees), project=from_trees)

    batch = import_file(
        path=write_jsonl(tmp_path / "nodes.jsonl", [tree["prompt"] for tree in trees]), project=from_nodes
    )

    assert batch.format == "oasst-tree"
    assert snapshot(from_nodes) == snapshot(from_trees)


@pytest.mark.parametrize(
    ("links", "message"),
    [
        ({"a1": "a1"}, "message a1 names itself as its parent"),
        ({"a1": "p2", "p2": "a1"}, "is in a cycle of parent_id links"),
    ],
)
def test_oasst_message_rows_whose_parents_loop_are_refused(tmp_path, links, message):
    rows = oa_rows(rust_tree())
    for row in rows:
        if row["message_id"] in links:
            row["parent_id"] = links[row["message_id"]]
    before = database_counts()

    with pytest.raises(ImportFailed, match=message):
        import_file(path=write_jsonl(tmp_path / "loop.jsonl", rows), project=ProjectFactory())
    assert database_counts() == before


def test_an_empty_file_is_refused_whatever_format_is_named(tmp_path):
    empty = write_jsonl(tmp_path / "empty.jsonl", ["", ""])

    for format in ("auto", "pairs", "oasst-messages"):
        with pytest.raises(ImportFailed, match=r"empty\.jsonl:1: the file holds no rows"):
            import_file(path=empty, project=ProjectFactory(), format=format)
    assert not ImportBatch.objects.exists()


def test_oasst_message_rows_of_interleaved_trees_are_rebuilt(tmp_path):
    first, second = oa_rows(rust_tree()), oa_rows(second_tree())
    interleaved = [second[0], *first[:5], second[1], *first[5:], second[2]]
    reference, project = ProjectFactory(), ProjectFactory()
    import_file(path=write_jsonl(tmp_path / "sorted.jsonl", first + second), project=reference)

    import_file(path=write_jsonl(tmp_path / "mixed.jsonl", interleaved), project=project)

    assert snapshot(project) == snapshot(reference)


def test_gzipped_oasst_trees_are_read_like_plain_ones(tmp_path):
    plain, compressed = ProjectFactory(), ProjectFactory()
    import_file(path=write_jsonl(tmp_path / "t.jsonl", [rust_tree()]), project=plain)

    batch = import_file(path=write_jsonl(tmp_path / "t.jsonl.gz", [rust_tree()], gz=True), project=compressed)

    assert batch.file_name == "t.jsonl.gz"
    assert len(batch.sha256) == 64
    assert snapshot(compressed) == snapshot(plain)


def test_oasst_rows_with_only_the_required_fields_import(tmp_path):
    rows = [
        {"message_id": "r", "parent_id": None, "message_tree_id": "r", "role": "prompter", "text": "Hi"},
        {"message_id": "x", "parent_id": "r", "message_tree_id": "r", "role": "assistant", "text": "Hello"},
        {"message_id": "y", "parent_id": "r", "message_tree_id": "r", "role": "assistant", "text": "Hey"},
    ]
    project = ProjectFactory()

    batch = import_file(path=write_jsonl(tmp_path / "m.jsonl", rows), project=project)

    assert (batch.items_created, batch.answers_created, batch.rankings_created) == (1, 2, 0)


def test_oasst_nodes_without_ids_get_stable_hashed_ids(tmp_path):
    tree = {
        "message_tree_id": "t",
        "prompt": {
            "role": "prompter",
            "text": "No ids here",
            "replies": [
                {"role": "assistant", "text": "One", "rank": 1},
                {"role": "assistant", "text": "Two"},
            ],
        },
    }
    path = write_jsonl(tmp_path / "t.jsonl", [tree])
    project = ProjectFactory()

    first = import_file(path=path, project=project)
    again = import_file(path=path, project=project)

    assert (first.items_created, first.answers_created, first.rankings_created) == (1, 2, 0)
    assert (again.items_created, again.answers_created) == (0, 0)
    item = Item.objects.get(project=project)
    assert item.external_id.startswith("sha256:")
    assert all(answer.external_id.startswith("sha256:") for answer in item.answers.all())


# Ranking rows.


def test_ranking_rows_import_answers_models_ties_and_ids(tmp_path):
    rows = [
        {"prompt": "2+2?", "answers": ["4", "5", "four"], "ranking": [[0, 2], 1], "id": "math-1"},
        {
            "conversation": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello"},
                {"role": "user", "content": "Bye"},
            ],
            "answers": [{"text": "Bye!", "model": "gpt-x"}, {"text": "See you"}],
        },
    ]
    project = ProjectFactory()

    batch = import_file(path=write_jsonl(tmp_path / "r.jsonl", rows), project=project, format="rankings")

    assert (batch.items_created, batch.answers_created, batch.rankings_created) == (2, 5, 1)
    math = Item.objects.get(project=project, external_id="math-1")
    four, five, word = math.answers.order_by("position")
    assert math.rankings.get().order == [[four.pk, word.pk], [five.pk]]
    chat = Item.objects.get(project=project, external_id__startswith="sha256:")
    assert chat.conversation[0] == {"role": "system", "content": "Be brief."}
    assert list(chat.answers.values_list("model_name", flat=True)) == ["gpt-x", ""]
    assert not chat.rankings.exists()  # no ranking: it waits for annotators


def test_reimporting_a_file_changes_nothing(tmp_path):
    path = write_jsonl(tmp_path / "trees.jsonl.gz", [rust_tree(), second_tree()], gz=True)
    project = ProjectFactory()
    import_file(path=path, project=project)
    before = snapshot(project)

    again = import_file(path=path, project=project)

    assert (again.items_created, again.answers_created, again.rankings_created) == (0, 0, 0)
    assert snapshot(project) == before


def test_an_overlapping_file_adds_only_what_is_new(tmp_path):
    project = ProjectFactory()
    first = [
        {"id": "a", "prompt": "A?", "answers": ["a1", "a2"], "ranking": [0, 1]},
        {"id": "b", "prompt": "B?", "answers": ["b1", "b2"]},
    ]
    import_file(path=write_jsonl(tmp_path / "one.jsonl", first), project=project)
    answer_ids = set(Answer.objects.values_list("pk", flat=True))
    second = [
        # Same item with a different ranking: the imported ranking already held is kept as it was.
        {"id": "a", "prompt": "A?", "answers": ["a2", "a1"], "ranking": [0, 1]},
        # Same item with one new answer and now a ranking.
        {"id": "b", "prompt": "B?", "answers": ["b1", "b2", "b3"], "ranking": [2, 0, 1]},
        {"id": "c", "prompt": "C?", "answers": ["c1", "c2"]},
    ]

    batch = import_file(path=write_jsonl(tmp_path / "two.jsonl", second), project=project)

    assert (batch.items_created, batch.answers_created, batch.rankings_created) == (1, 3, 1)
    assert set(Answer.objects.values_list("pk", flat=True)) >= answer_ids
    items = snapshot(project)
    assert items["a"]["rankings"][""][0] == [[items["a"]["answers"][0][1]], [items["a"]["answers"][1][1]]]
    assert [answer[:1] + answer[2:3] for answer in items["b"]["answers"]] == [(0, "b1"), (1, "b2"), (2, "b3")]
    b1, b2, b3 = (answer[1] for answer in items["b"]["answers"])
    assert items["b"]["rankings"][""][0] == [[b3], [b1], [b2]]


def test_imported_rankings_sit_beside_peoples_rankings(tmp_path):
    project = ProjectFactory()
    item = ItemFactory(
        project=project,
        external_id="shared",
        conversation=[{"role": "user", "content": "Shared?"}],
        answers=["x", "y"],
    )
    person = UserFactory()
    Ranking.objects.create(item=item, annotator=person, order=[[a.pk] for a in item.answers.all()])
    rows = [
        {"id": "shared", "prompt": "Shared?", "answers": [{"text": "x"}, {"text": "z"}], "ranking": [1, 0]}
    ]

    import_file(path=write_jsonl(tmp_path / "r.jsonl", rows), project=project)

    assert item.rankings.filter(source="human").count() == 1
    imported = item.rankings.get(source="import")
    assert imported.annotator is None and imported.external_annotator == ""
    assert item.answers.count() == 4  # the factory's answers have no external id, so x is new


# Pairwise rows.

HH_PROMPT = "\n\nHuman: Hi\n\nAssistant: Hello! How can I help?\n\nHuman: Tell me a joke."


def test_hh_pairs_split_the_shared_prefix_and_merge_rows_with_the_same_prompt(tmp_path):
    rows = [
        {
            "chosen": HH_PROMPT + "\n\nAssistant: Why did the chicken...",
            "rejected": HH_PROMPT + "\n\nAssistant: No.",
        },
        {
            "chosen": HH_PROMPT + "\n\nAssistant: Why did the chicken...",
            "rejected": HH_PROMPT + "\n\nAssistant: I won't.",
        },
        {"chosen": "\n\nHuman: Other?\n\nAssistant: Yes.", "rejected": "\n\nHuman: Other?\n\nAssistant: No."},
        # Identical sides state no preference and are skipped.
        {
            "chosen": "\n\nHuman: Same?\n\nAssistant: Same.",
            "rejected": "\n\nHuman: Same?\n\nAssistant: Same.",
        },
    ]
    project = ProjectFactory()

    batch = import_file(path=write_jsonl(tmp_path / "hh.jsonl", rows), project=project)

    assert batch.format == "pairs"
    assert (batch.items_created, batch.answers_created, batch.rankings_created) == (2, 5, 3)
    joke = Item.objects.get(project=project, conversation__0__content="Hi")
    assert joke.conversation == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell me a joke."},
    ]
    texts = {answer.pk: answer.text for answer in joke.answers.all()}
    assert sorted(texts.values()) == ["I won't.", "No.", "Why did the chicken..."]
    pairs = sorted(
        [texts[ranking.order[0][0]], texts[ranking.order[1][0]]] for ranking in joke.rankings.all()
    )
    assert pairs == [["Why did the chicken...", "I won't."], ["Why did the chicken...", "No."]]
    assert all(ranking.external_annotator.startswith("pair:") for ranking in joke.rankings.all())

    again = import_file(path=write_jsonl(tmp_path / "hh-again.jsonl", rows[1:2]), project=project)
    assert (again.items_created, again.answers_created, again.rankings_created) == (0, 0, 0)


def test_explicit_and_conversational_pairs_with_the_same_prompt_share_an_item(tmp_path):
    rows = [
        {"prompt": "Capital of France?", "chosen": "Paris", "rejected": "Lyon"},
        {
            "prompt": [{"role": "user", "content": "Capital of France?"}],
            "chosen": [{"role": "assistant", "content": "Paris"}],
            "rejected": [{"role": "assistant", "content": "Marseille"}],
        },
        {
            # Implicit-prompt conversational rows repeat the conversation on both sides.
            "chosen": [
                {"role": "user", "content": "Capital of France?"},
                {"role": "assistant", "content": "Paris"},
            ],
            "rejected": [
                {"role": "user", "content": "Capital of France?"},
                {"role": "assistant", "content": "Nice"},
            ],
        },
    ]
    project = ProjectFactory()

    batch = import_file(path=write_jsonl(tmp_path / "pairs.jsonl", rows), project=project, format="pairs")
    hh = {
        "prompt": "\n\nHuman: Capital of France?\n\nAssistant:",
        "chosen": " Paris",
        "rejected": " Toulouse",
    }
    # TRL's explicit-prompt copy of Anthropic HH keeps the markers in the prompt: same item again.
    import_file(path=write_jsonl(tmp_path / "hh-explicit.jsonl", [hh]), project=project)

    item = Item.objects.get(project=project)
    assert item.conversation == [{"role": "user", "content": "Capital of France?"}]
    assert list(item.answers.values_list("text", flat=True)) == [
        "Paris",
        "Lyon",
        "Marseille",
        "Nice",
        "Toulouse",
    ]
    assert (batch.items_created, batch.rankings_created) == (1, 3)


def test_a_pair_repeated_in_a_later_chunk_is_kept_once(tmp_path, monkeypatch):
    # One record per chunk: the item the first chunk creates is an existing item to the later ones.
    monkeypatch.setattr(imports, "CHUNK_SIZE", 1)
    rows = [
        {"prompt": "Q?", "chosen": "yes", "rejected": "no"},
        {"prompt": "Q?", "chosen": "yes", "rejected": "no"},
        {"prompt": "Q?", "chosen": "yes", "rejected": "maybe"},
    ]
    project = ProjectFactory()

    batch = import_file(path=write_jsonl(tmp_path / "pairs.jsonl", rows), project=project)

    assert (batch.items_created, batch.answers_created, batch.rankings_created) == (1, 3, 2)
    assert Ranking.objects.filter(item__project=project).count() == 2


def test_a_first_import_reads_no_rankings_back(tmp_path):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    rows = [{"id": f"q-{n}", "prompt": f"Q{n}?", "answers": ["a", "b"], "ranking": [1, 0]} for n in range(5)]
    project = ProjectFactory()

    with CaptureQueriesContext(connection) as queries:
        batch = import_file(path=write_jsonl(tmp_path / "r.jsonl", rows), project=project)

    assert batch.rankings_created == 5
    ranking_reads = [
        q["sql"] for q in queries if q["sql"].startswith("SELECT") and Ranking._meta.db_table in q["sql"]
    ]
    assert ranking_reads == []  # every item is new, so none can hold an imported ranking yet


# Malformed files: the file and line are named, and nothing is written.

GOOD_ROW = {"prompt": "Fine?", "answers": ["yes", "no"], "ranking": [0, 1]}


def rows_with(bad_row, *, at: int = 7) -> list:
    return [{**GOOD_ROW, "id": f"good-{n}"} for n in range(1, at)] + [bad_row]


@pytest.mark.parametrize(
    ("rows", "line", "message"),
    [
        (rows_with('{"prompt": "broken",'), 7, "not valid JSON"),
        (rows_with({"prompt": "No answers"}), 7, "answers is missing"),
        (rows_with({"prompt": "Empty", "answers": []}), 7, "at least two answers"),
        (rows_with({"prompt": "One", "answers": ["only"]}), 7, "at least two answers"),
        (rows_with({"prompt": "Missing", "answers": ["a", "b"], "ranking": [0, 2]}), 7, "names answer 2"),
        (rows_with({"prompt": "Number", "answers": ["a", 5]}), 7, "answers[1] must be a string"),
        (rows_with({"prompt": "Same", "answers": ["a", "a"]}), 7, "answers 0 and 1 are the same"),
        (rows_with({"answers": ["a", "b"], "conversation": [{"role": "robot", "content": "?"}]}), 7, "robot"),
        (rows_with({"answers": ["a", "b"], "conversation": [{"role": "user"}]}), 7, "content is missing"),
        (rows_with({"answers": ["a", "b"], "prompt": "nul \u0000 byte"}), 7, "NUL character"),
        (
            rows_with({"answers": ["a", "b"], "prompt": "x", "ranking": [0, [1, 0]]}),
            7,
            "names answer 0 twice",
        ),
        (rows_with([1, 2]), 7, "expected a JSON object"),
    ],
)
def test_a_malformed_ranking_file_names_the_line_and_leaves_the_database_as_it_was(
    tmp_path, monkeypatch, rows, line, message
):
    # Small chunks, so good rows were written before the bad line is reached and must be rolled back.
    monkeypatch.setattr(imports, "CHUNK_SIZE", 2)
    project = ProjectFactory()
    before = database_counts()

    with pytest.raises(ImportFailed) as failure:
        import_file(path=write_jsonl(tmp_path / "bad.jsonl", rows), project=project, format="rankings")

    assert str(failure.value).startswith(f"bad.jsonl:{line}: ")
    assert message in str(failure.value)
    assert database_counts() == before


def broken_tree(**changes) -> dict:
    tree = rust_tree()
    tree["prompt"]["replies"][0]["replies"][0]["replies"][1].update(changes)
    return tree


@pytest.mark.parametrize(
    ("format", "rows", "line", "message"),
    [
        ("oasst-tree", [second_tree(), broken_tree(role="robot")], 2, "unknown role 'robot'"),
        ("oasst-tree", [second_tree(), broken_tree(text=None)], 2, "text of message a4 must be a string"),
        ("oasst-tree", [second_tree(), broken_tree(rank="first")], 2, "rank must be a whole number"),
        ("oasst-tree", [second_tree(), broken_tree(role="prompter")], 2, "is not an assistant"),
        (
            "oasst-tree",
            [
                oa_tree(
                    oa_message(
                        "r",
                        "prompter",
                        "?",
                        replies=[
                            oa_message("x", "assistant", "a", replies=[oa_message("y", "assistant", "b")])
                        ],
                    )
                )
            ],
            1,
            "message y has the role of the message it replies to (assistant)",
        ),
        ("oasst-messages", oa_rows(second_tree()) + oa_rows(broken_tree(role="robot")), 8, "unknown role"),
        (
            "oasst-messages",
            [*oa_rows(second_tree()), {**oa_rows(second_tree())[1], "message_id": "b9", "parent_id": "gone"}],
            4,
            "parent 'gone' is not a message of tree q1",
        ),
        (
            "oasst-messages",
            [{"message_id": "m", "role": "prompter", "text": "?"}],
            1,
            "message_tree_id is missing",
        ),
        (
            "pairs",
            [{"prompt": "p", "chosen": "a", "rejected": "b"}, {"prompt": "p", "chosen": "a"}],
            2,
            "rejected",
        ),
        (
            "pairs",
            [{"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "no markers"}],
            1,
            'no "\\n\\nAssistant',
        ),
        (
            "pairs",
            [{"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: c\n\nAssistant: d"}],
            1,
            "differ",
        ),
    ],
)
def test_malformed_oasst_and_pair_files_name_the_line_and_write_nothing(
    tmp_path, format, rows, line, message
):
    project = ProjectFactory()
    before = database_counts()

    with pytest.raises(ImportFailed) as failure:
        import_file(path=write_jsonl(tmp_path / "bad.jsonl", rows), project=project)

    assert str(failure.value).startswith(f"bad.jsonl:{line}: "), str(failure.value)
    assert message in str(failure.value)
    assert database_counts() == before


def test_a_ranking_event_naming_a_message_that_is_no_reply_fails(tmp_path):
    tree = second_tree()
    tree["prompt"]["events"] = {"ranking": [{"user_id": "u", "ranked_message_ids": ["b1", "elsewhere"]}]}

    with pytest.raises(ImportFailed, match=r"t\.jsonl:1: .*'elsewhere', not a reply"):
        import_file(path=write_jsonl(tmp_path / "t.jsonl", [tree]), project=ProjectFactory())


def test_a_truncated_gzip_file_fails_without_writing(tmp_path, monkeypatch):
    monkeypatch.setattr(imports, "CHUNK_SIZE", 1)
    rows = [{**GOOD_ROW, "id": f"row-{n}", "prompt": f"Question {n} " * 50} for n in range(200)]
    path = write_jsonl(tmp_path / "big.jsonl.gz", rows, gz=True)
    path.write_bytes(path.read_bytes()[:-200])

    with pytest.raises(ImportFailed, match=r"big\.jsonl\.gz:\d+: the gzip data is damaged"):
        import_file(path=path, project=ProjectFactory())
    assert database_counts() == (0, 0, 0, 0)


def test_every_format_the_parser_reads_is_one_an_import_batch_can_record():
    # The parser is plain Python and keeps its own list; the batch's choices must not drift from it.
    from preferences.readers import FORMATS

    assert list(FORMATS) == ImportBatch.Format.values


def test_a_file_of_unknown_shape_is_refused(tmp_path):
    path = write_jsonl(tmp_path / "odd.jsonl", ["", {"question": "?", "reply": "!"}])

    with pytest.raises(ImportFailed, match=r"odd\.jsonl:2: cannot tell the format"):
        file_format(RowFile(path))
    with pytest.raises(ImportFailed, match=r"empty\.jsonl:1: the file holds no rows"):
        import_file(path=write_jsonl(tmp_path / "empty.jsonl", []), project=ProjectFactory())


# The command.


def test_import_data_command_imports_and_reports_counts_with_a_progress_bar(tmp_path, capsys):
    project = ProjectFactory(name="OA")
    path = write_jsonl(tmp_path / "trees.jsonl.gz", [rust_tree(), second_tree()], gz=True)

    call_command("import_data", str(path), "--project", "OA", "--format", "oasst-tree")

    out, err = capsys.readouterr()
    assert "3 new items, 7 new answers, 6 new imported rankings" in out
    assert "100%" in err  # tqdm's bar on stderr
    assert Item.objects.filter(project=project).count() == 3


def test_import_data_command_fails_with_the_line_and_writes_nothing(tmp_path):
    ProjectFactory(name="Bad")
    path = write_jsonl(tmp_path / "bad.jsonl", rows_with('{"prompt": "broken",'))

    with pytest.raises(CommandError, match=r"bad\.jsonl:7: not valid JSON"):
        call_command("import_data", str(path), "--project", "Bad", "--no-progress")
    assert database_counts() == (0, 0, 0, 0)


def test_import_data_command_refuses_an_unknown_project_unless_asked_to_create_it(tmp_path):
    path = write_jsonl(tmp_path / "r.jsonl", [GOOD_ROW])
    with pytest.raises(CommandError, match="No project named 'New'"):
        call_command("import_data", str(path), "--project", "New", "--no-progress")

    call_command("import_data", str(path), "--project", "New", "--create-project", "--no-progress")

    assert Item.objects.filter(project__name="New").count() == 1


@pytest.mark.django_db(transaction=True)
def test_import_data_exits_non_zero_on_a_bad_line(tmp_path):
    ProjectFactory(name="Shell")
    path = write_jsonl(
        tmp_path / "bad.jsonl", [GOOD_ROW, {"prompt": "x", "answers": ["a", "b"], "ranking": [5]}]
    )

    result = subprocess.run(
        [sys.executable, "manage.py", "import_data", str(path), "--project", "Shell", "--no-progress"],
        cwd=Path(__file__).resolve().parent.parent,
        env=child_process_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode != 0
    assert f"{path}:2: ranking names answer 5" in result.stderr
    assert database_counts() == (0, 0, 0, 0)


def test_our_rankings_export_reimports_with_each_persons_order_by_answer_id(tmp_path):
    from annotation.exports import ExportFilters, export_rows
    from tests.factories import RankingFactory

    source = ProjectFactory(name="Exported")
    item = ItemFactory(project=source, answers=["Paris", "Lyon", "Nice"])
    paris, lyon, nice = item.answers.order_by("position")
    RankingFactory(item=item, annotator=UserFactory(), order=[[nice.pk], [paris.pk, lyon.pk]])
    RankingFactory(item=item, annotator=UserFactory(), order=[[lyon.pk], [paris.pk], [nice.pk]])
    path = tmp_path / "rankings.jsonl"
    path.write_text(
        "".join(
            json.dumps(row) + "\n"
            for row in export_rows(project=source, format="rankings", filters=ExportFilters())
        )
    )

    copy = ProjectFactory(name="Re-imported")
    batch = import_file(path=path, project=copy)
    assert (batch.items_created, batch.rankings_created) == (1, 2)
    new_item = copy.items.get()
    text = {answer.pk: answer.text for answer in new_item.answers.all()}
    orders = sorted([[sorted(text[a] for a in group) for group in r.order] for r in new_item.rankings.all()])
    assert orders == [[["Lyon"], ["Paris"], ["Nice"]], [["Nice"], ["Lyon", "Paris"]]]
    # And again: nothing new.
    assert import_file(path=path, project=copy).rankings_created == 0


def test_a_ranking_by_answer_id_that_names_an_unknown_answer_says_which(tmp_path):
    path = tmp_path / "bad.jsonl"
    row = {"prompt": "Q?", "answers": [{"id": 10, "text": "a"}, {"id": 11, "text": "b"}], "ranking": [11, 99]}
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(ImportFailed, match=r"bad.jsonl:1: ranking names answer id 99"):
        import_file(path=path, project=ProjectFactory())


def test_our_pairs_export_of_a_multi_turn_item_with_a_system_prompt_reimports_turn_for_turn(tmp_path):
    from annotation.exports import ExportFilters, export_rows
    from tests.factories import RankingFactory

    conversation = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Capital of France?"},
    ]
    item = ItemFactory(project=ProjectFactory(), conversation=conversation, answers=["Paris.", "Lyon."])
    paris, lyon = item.answers.order_by("position")
    RankingFactory(item=item, order=[[paris.pk], [lyon.pk]])
    rows = export_rows(project=item.project, format="pairs", filters=ExportFilters())
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))

    copy = ProjectFactory()
    import_file(path=path, project=copy, format="pairs")
    assert copy.items.get().conversation == conversation
