"""Imports of files nobody vouches for (issue #12): ids that name two conversations, rows of any size or
shape. Each is refused as `FILE:LINE: what is wrong`, nothing is written, and memory stays bounded."""

import gzip
import json
import tracemalloc

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from annotation import imports
from annotation.imports import ImportFailed, import_file
from annotation.models import Answer, ImportBatch, Item
from preferences.readers.files import RowFile
from tests.factories import ItemFactory, ProjectFactory, UserFactory
from tests.test_importers import (
    GOOD_ROW,
    database_counts,
    oa_message,
    oa_rows,
    oa_tree,
    rows_with,
    second_tree,
    write_jsonl,
)
from tests.test_importers import snapshot as project_snapshot

pytestmark = pytest.mark.django_db


def import_fails(path, *, format="auto", project=None) -> str:
    """Import `path`, which must fail; return the error after checking that nothing was written."""
    before = database_counts()
    with pytest.raises(ImportFailed) as failure:
        import_file(path=path, project=project or ProjectFactory(), format=format)
    assert database_counts() == before
    return str(failure.value)


# An item key that comes back with another conversation (finding 1).

ISSUE_ROWS = [
    {"id": "q1", "prompt": "What is 2+2?", "answers": ["4", "5"], "ranking": [0, 1]},
    {"id": "q1", "prompt": "Name a colour of the sky.", "answers": ["blue", "green"], "ranking": [0, 1]},
]


def test_an_id_reused_on_a_later_line_with_another_conversation_names_both_lines(tmp_path):
    rows = [{**GOOD_ROW, "id": "first"}, ISSUE_ROWS[0], {**GOOD_ROW, "id": "other"}, ISSUE_ROWS[1]]

    error = import_fails(write_jsonl(tmp_path / "reuse.jsonl", rows))

    assert error == (
        "reuse.jsonl:4: item q1 was read at line 2 with a different conversation; "
        "one id must name one conversation"
    )


def test_an_id_reused_in_a_later_chunk_is_caught_before_it_is_written(tmp_path, monkeypatch):
    monkeypatch.setattr(imports, "CHUNK_SIZE", 2)
    rows = [ISSUE_ROWS[0], *({**GOOD_ROW, "id": f"row-{n}"} for n in range(5)), ISSUE_ROWS[1]]

    error = import_fails(write_jsonl(tmp_path / "reuse.jsonl", rows))

    assert error.startswith("reuse.jsonl:7: item q1 was read at line 1 with a different conversation")


def test_an_id_reused_by_a_later_import_with_another_conversation_names_that_import(tmp_path):
    project = ProjectFactory()
    first = import_file(path=write_jsonl(tmp_path / "monday.jsonl", ISSUE_ROWS[:1]), project=project)

    error = import_fails(write_jsonl(tmp_path / "tuesday.jsonl", ISSUE_ROWS[1:]), project=project)

    assert error.startswith(
        f"tuesday.jsonl:1: item q1 was imported from monday.jsonl on {first.created_at:%Y-%m-%d %H:%M} UTC "
        f"(import batch {first.pk}) with a different conversation"
    )
    item = Item.objects.get(project=project)
    assert item.conversation == [{"role": "user", "content": "What is 2+2?"}]
    assert sorted(item.answers.values_list("text", flat=True)) == ["4", "5"]


def test_an_id_of_an_item_made_outside_imports_is_not_merged_into_either(tmp_path):
    project = ProjectFactory()
    ItemFactory(project=project, external_id="q1", conversation=[{"role": "user", "content": "Other?"}])

    error = import_fails(write_jsonl(tmp_path / "r.jsonl", ISSUE_ROWS[:1]), project=project)

    assert error.startswith("r.jsonl:1: item q1 already exists in this project with a different conversation")


def test_the_same_id_with_the_same_conversation_still_merges_within_a_file_and_across_imports(tmp_path):
    project = ProjectFactory()
    more = {"id": "q1", "prompt": "What is 2+2?", "answers": ["4", "22"], "annotator": "b", "ranking": [0, 1]}

    import_file(path=write_jsonl(tmp_path / "a.jsonl", [ISSUE_ROWS[0], more]), project=project)
    again = import_file(path=write_jsonl(tmp_path / "b.jsonl", [more, ISSUE_ROWS[0]]), project=project)

    item = Item.objects.get(project=project)
    assert sorted(item.answers.values_list("text", flat=True)) == ["22", "4", "5"]
    assert item.rankings.count() == 2
    assert (again.items_created, again.answers_created, again.rankings_created) == (0, 0, 0)


def test_an_open_assistant_prompt_id_in_two_threads_is_refused(tmp_path):
    replies = [oa_message("a1", "assistant", "One."), oa_message("a2", "assistant", "Two.")]
    first = oa_tree(oa_message("p1", "prompter", "First question?", replies=replies))
    second = oa_tree(
        oa_message(
            "root",
            "prompter",
            "Another question?",
            replies=[
                oa_message(
                    "x",
                    "assistant",
                    "Answer.",
                    replies=[oa_message("p1", "prompter", "Follow-up?", replies=replies)],
                )
            ],
        )
    )

    error = import_fails(write_jsonl(tmp_path / "trees.jsonl", [first, second]))

    assert error.startswith("trees.jsonl:2: item p1 was read at line 1 with a different conversation")


def test_a_pairs_item_id_reused_with_another_prompt_is_refused(tmp_path):
    rows = [
        {"item_id": 7, "prompt": "Is water wet?", "chosen": "Yes.", "rejected": "No."},
        {"item_id": 7, "prompt": "Is fire hot?", "chosen": "Yes.", "rejected": "No."},
    ]

    error = import_fails(write_jsonl(tmp_path / "pairs.jsonl", rows))

    assert error.startswith("pairs.jsonl:2: item 7 was read at line 1 with a different conversation")


def test_the_engine_refuses_a_reused_id_as_the_importer_does(tmp_path):
    from training.reward_model.data import read_groups

    path = write_jsonl(tmp_path / "reuse.jsonl", ISSUE_ROWS)

    with pytest.raises(ValueError, match=r"^reuse\.jsonl:2: item q1 was read at line 1 with a different"):
        read_groups(path)


# Malformed values (finding 4): each one a FILE:LINE error, not a 500.


def tree_with(**changes) -> dict:
    """A tree of one prompt and two replies, with `changes` made to its prompt."""
    tree = second_tree()
    tree["prompt"].update(changes)
    return tree


def reply_with(**changes) -> dict:
    """The same tree with `changes` made to its first reply."""
    tree = second_tree()
    tree["prompt"]["replies"][0].update(changes)
    return tree


def message_rows_with(index: int, **changes) -> list[dict]:
    """The same tree as message rows, with `changes` made to row `index`."""
    rows = oa_rows(second_tree())
    rows[index].update(changes)
    return rows


RANKED_EVENT = {"user_id": "u1", "ranked_message_ids": ["b1", "b2"]}


@pytest.mark.parametrize(
    ("rows", "line", "message"),
    [
        # Ids, roles and links given as lists or objects.
        pytest.param(
            rows_with({**GOOD_ROW, "id": ["q1"]}), 7, "id must be a string, not a list", id="row-id-list"
        ),
        pytest.param(
            rows_with({**GOOD_ROW, "id": {"a": 1}}), 7, "id must be a string, not an object", id="row-id-obj"
        ),
        pytest.param(
            rows_with({**GOOD_ROW, "item_id": [1]}), 7, "item_id must be a string", id="item-id-list"
        ),
        pytest.param(
            rows_with({**GOOD_ROW, "answers": [{"text": "a", "id": {"x": 1}}, {"text": "b", "id": "b"}]}),
            7,
            "answers[0].id must be a string, not an object",
            id="answer-id-obj",
        ),
        pytest.param(
            rows_with({"conversation": [{"role": ["user"], "content": "Hi?"}], "answers": ["a", "b"]}),
            7,
            "conversation[0] has unknown role ['user']",
            id="turn-role-list",
        ),
        pytest.param(
            rows_with({"conversation": [{"from": {"human": 1}, "value": "Hi?"}], "answers": ["a", "b"]}),
            7,
            "conversation[0] has unknown role {'human': 1}",
            id="turn-from-obj",
        ),
        pytest.param(
            [tree_with(message_id=["q1"])], 1, "message_id must be a string, not a list", id="oa-id-list"
        ),
        pytest.param([tree_with(role=["prompter"])], 1, "unknown role ['prompter']", id="oa-role-list"),
        pytest.param(
            [{"role": ["prompter"], "text": "Bare root?", "replies": []}],
            1,
            "cannot tell the format from the first row",
            id="oa-bare-root-role-list",
        ),
        pytest.param(
            [reply_with(role={"a": 1})], 1, "message b1 has unknown role {'a': 1}", id="oa-reply-role"
        ),
        pytest.param(
            [tree_with(events={"ranking": [{**RANKED_EVENT, "user_id": ["u1"]}]})],
            1,
            "events.ranking user_id must be a string, not a list",
            id="oa-user-id-list",
        ),
        pytest.param(
            [tree_with(events={"ranking": [{**RANKED_EVENT, "ranked_message_ids": {"b1": 0}}]})],
            1,
            "events.ranking of user u1 needs ranked_message_ids as a list",
            id="oa-ranked-ids-obj",
        ),
        pytest.param(
            [tree_with(events={"ranking": [{**RANKED_EVENT, "ranked_message_ids": [["b1"], "b2"]}]})],
            1,
            "events.ranking of user u1: a message id must be a string, not a list",
            id="oa-ranked-id-list",
        ),
        pytest.param(
            message_rows_with(1, parent_id=["q1"]),
            2,
            "parent_id must be a string, not a list",
            id="rows-parent-list",
        ),
        pytest.param(
            message_rows_with(2, parent_id={"id": "q1"}),
            3,
            "parent_id must be a string, not an object",
            id="rows-parent-obj",
        ),
        pytest.param(
            message_rows_with(0, message_tree_id=["q1"]),
            1,
            "message_tree_id must be a string",
            id="rows-tree-id-list",
        ),
        pytest.param(
            message_rows_with(1, role=["assistant"]), 2, "unknown role ['assistant']", id="rows-role-list"
        ),
        pytest.param(
            [{"prompt": [{"role": {"r": "user"}, "content": "Hi?"}], "chosen": [], "rejected": []}],
            1,
            "prompt[0] has unknown role {'r': 'user'}",
            id="pair-role-obj",
        ),
        # Lone surrogates: valid JSON escapes that no text (and not the database) can hold.
        pytest.param(
            rows_with({**GOOD_ROW, "prompt": "Hi \ud800?"}),
            7,
            "prompt contains a lone surrogate",
            id="surrogate-prompt",
        ),
        pytest.param(
            rows_with({**GOOD_ROW, "answers": ["a\udfff", "b"]}),
            7,
            "answers[0].text contains a lone surrogate",
            id="surrogate-answer",
        ),
        pytest.param(
            rows_with({**GOOD_ROW, "id": "q\ud800"}), 7, "id contains a lone surrogate", id="surrogate-id"
        ),
        pytest.param(
            [reply_with(text="\udc00")], 1, "text of message b1 contains a lone surrogate", id="surrogate-oa"
        ),
        pytest.param(
            [{"prompt": "Hi?", "chosen": "a\ud83d", "rejected": "b"}],
            1,
            "chosen contains a lone surrogate",
            id="surrogate-pair",
        ),
        # JSON that Python cannot hold as it is.
        pytest.param(
            rows_with('{"n": ' + "[" * 600 + "]" * 600 + "}"),
            7,
            "nested deeper than the limit of 512",
            id="depth-600",
        ),
        pytest.param(
            rows_with('{"n": ' + "[" * 5000 + "]" * 5000 + "}"),
            7,
            "JSON nested deeper than Python can read",
            id="depth-5000",
        ),
        pytest.param(
            rows_with('{"n": ' + "7" * 5000 + "}"),
            7,
            "a number with more than 4300 digits",
            id="integer-5000-digits",
        ),
    ],
)
def test_malformed_values_are_refused_with_their_line_and_nothing_is_written(tmp_path, rows, line, message):
    error = import_fails(write_jsonl(tmp_path / "bad.jsonl", rows))

    assert error.startswith(f"bad.jsonl:{line}: "), error
    assert message in error


def test_json_nested_deeper_than_the_setting_is_refused(tmp_path, settings):
    settings.IMPORT_MAX_JSON_DEPTH = 5
    shallow = {**GOOD_ROW, "id": "ok", "extra": [[[1]]]}  # four levels with the row itself
    deep = {**GOOD_ROW, "id": "deep", "extra": [[[[[1]]]]]}

    error = import_fails(write_jsonl(tmp_path / "deep.jsonl", [shallow, deep]))

    assert error == "deep.jsonl:2: JSON nested deeper than the limit of 5 levels"


# Limits on size (findings 2 and 3), each a setting.


def gzip_bomb(path, *, prefix: bytes, size: int):
    """A small gzip file whose first line expands to `size` bytes (of `prefix` and then "x")."""
    with gzip.open(path, "wb", compresslevel=9) as out:
        out.write(prefix)
        block = b"x" * (1 << 20)
        for _ in range(size // len(block)):
            out.write(block)
        out.write(b'"}\n')
    return path


def peak_python_memory(run) -> int:
    """The most memory Python's allocators held while `run()` ran, in bytes."""
    tracemalloc.start()
    try:
        run()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_a_line_over_the_byte_limit_is_refused_without_reading_it_whole(tmp_path, settings):
    settings.IMPORT_MAX_LINE_BYTES = 1000
    rows = [{**GOOD_ROW, "id": "small"}, {**GOOD_ROW, "id": "big", "prompt": "y" * 1000}]
    assert import_fails(write_jsonl(tmp_path / "long.jsonl", rows)) == (
        "long.jsonl:2: the line is longer than the limit of 1,000 bytes"
    )
    bomb = gzip_bomb(tmp_path / "bomb.jsonl.gz", prefix=b'{"prompt": "', size=64 << 20)
    assert bomb.stat().st_size < 200_000
    errors = []

    # 64 MB of line, of which no more than the limit (and gzip's read-ahead) is ever held.
    peak = peak_python_memory(lambda: errors.append(import_fails(bomb)))

    assert errors == ["bomb.jsonl.gz:1: the line is longer than the limit of 1,000 bytes"]
    assert peak < 4 << 20, peak


def test_a_json_array_is_read_row_by_row_and_each_row_held_to_the_byte_limit(tmp_path, settings):
    settings.IMPORT_MAX_LINE_BYTES = 1000
    rows = [{**GOOD_ROW, "id": f"row-{n}", "prompt": f"Question {n}?"} for n in range(300)]
    array = tmp_path / "rows.json"
    array.write_text(json.dumps(rows, indent=2))  # 30 kB, far more than one row's limit
    from_array, from_lines = ProjectFactory(), ProjectFactory()
    import_file(path=array, project=from_array)
    import_file(path=write_jsonl(tmp_path / "rows.jsonl", rows), project=from_lines)
    assert project_snapshot(from_array) == project_snapshot(from_lines)
    first_row = b'[{"prompt": "Hi?", "answers": ["a", "b"]}, {"prompt": "'
    bomb = gzip_bomb(tmp_path / "bomb.json.gz", prefix=first_row, size=64 << 20)
    errors = []

    peak = peak_python_memory(lambda: errors.append(import_fails(bomb)))

    assert errors == ["bomb.json.gz:2: the row is longer than the limit of 1,000 bytes"]
    assert peak < 8 << 20, peak


def write_parquet(path, rows: list, *, row_group_size: int):
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=row_group_size, compression="zstd")
    return path


def test_a_parquet_row_group_over_the_limit_is_refused_before_any_row_is_read(
    tmp_path, settings, monkeypatch
):
    settings.IMPORT_MAX_PARQUET_ROW_GROUP_BYTES = 64 * 1024
    small = [{**GOOD_ROW, "id": f"small-{n}"} for n in range(10)]
    # 10 rows of 20,000 characters: 200 kB in its row group, a few hundred bytes once compressed.
    wide = [{**GOOD_ROW, "id": f"wide-{n}", "prompt": f"{n}" + "w" * 20_000} for n in range(10)]
    path = write_parquet(tmp_path / "wide.parquet", small + wide, row_group_size=10)
    read = []
    iter_batches = pq.ParquetFile.iter_batches
    monkeypatch.setattr(
        pq.ParquetFile, "iter_batches", lambda self, **kw: read.append(kw) or iter_batches(self, **kw)
    )

    error = import_fails(path)

    assert error.startswith("wide.parquet:11: row group 2 (rows 11 to 20) holds 0.2 MiB uncompressed, over ")
    assert error.endswith(
        "0.1 MiB one may hold; write the file with smaller row groups (pyarrow: row_group_size)"
    )
    assert read == []  # the metadata said it: no row of the file was decoded


def test_parquet_rows_are_decoded_in_batches_of_about_8_mib_and_import_as_their_jsonl(tmp_path):
    rows = [{**GOOD_ROW, "id": f"row-{n}", "prompt": f"{n}: " + "p" * 100_000} for n in range(40)]
    parquet = write_parquet(tmp_path / "rows.parquet", rows, row_group_size=20)
    source = RowFile(parquet)

    # 100 kB rows: 8 MiB is some 80 of them, so batches stay whole row groups' worth at most 1024 rows.
    assert 60 <= source._parquet_batch_rows(pq.ParquetFile(parquet).metadata) <= 90
    from_parquet, from_lines = ProjectFactory(), ProjectFactory()
    import_file(path=parquet, project=from_parquet)
    import_file(path=write_jsonl(tmp_path / "rows.jsonl", rows), project=from_lines)
    assert project_snapshot(from_parquet) == project_snapshot(from_lines)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [{**GOOD_ROW, "prompt": "p" * 101}],
            "turn 1 of conversation has 101 characters, more than the limit of 100",
        ),
        (
            [
                {
                    "conversation": [
                        {"role": "system", "content": "s" * 101},
                        {"role": "user", "content": "Hi?"},
                    ],
                    "answers": ["a", "b"],
                }
            ],
            "turn 1 of conversation has 101 characters",
        ),
        (
            [second_tree() | {"prompt": second_tree()["prompt"] | {"text": "q" * 101}}],
            "text of message q1 has 101 characters",
        ),
        ([{"prompt": "p" * 101, "chosen": "a", "rejected": "b"}], "turn 1 of the prompt has 101 characters"),
    ],
)
def test_a_turn_over_the_character_limit_is_refused(tmp_path, settings, rows, message):
    settings.IMPORT_MAX_TURN_CHARS = 100

    error = import_fails(write_jsonl(tmp_path / "t.jsonl", rows))

    assert error.startswith("t.jsonl:1: ") and message in error, error


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [{**GOOD_ROW, "answers": ["a", "b" * 101]}],
            "answer 1 has 101 characters, more than the limit of 100",
        ),
        ([{"prompt": "Hi?", "chosen": "c" * 101, "rejected": "r"}], "answer 0 has 101 characters"),
        (
            [
                second_tree()
                | {
                    "prompt": second_tree()["prompt"]
                    | {
                        "replies": [
                            oa_message("a", "assistant", "a" * 101),
                            oa_message("b", "assistant", "b"),
                        ]
                    }
                }
            ],
            "answer 0 has 101 characters",
        ),
    ],
)
def test_an_answer_over_the_character_limit_is_refused(tmp_path, settings, rows, message):
    settings.IMPORT_MAX_ANSWER_CHARS = 100

    error = import_fails(write_jsonl(tmp_path / "a.jsonl", rows))

    assert error.startswith("a.jsonl:1: ") and message in error, error


def test_an_item_over_the_answer_limit_is_refused_in_one_row_or_merged_from_several(tmp_path, settings):
    settings.ITEM_MAX_ANSWERS = 3
    four = {"prompt": "Hi?", "answers": ["a", "b", "c", "d"]}
    assert "the item has 4 answers, more than the limit of 3" in import_fails(
        write_jsonl(tmp_path / "r.jsonl", [four])
    )

    pairs = [
        {"prompt": "Hi?", "chosen": "a", "rejected": "b"},
        {"prompt": "Hi?", "chosen": "c", "rejected": "d"},
    ]
    error = import_fails(write_jsonl(tmp_path / "pairs.jsonl", pairs))
    assert error.startswith("pairs.jsonl:2: item sha256:") and error.endswith(
        "would have more answers than the limit of 3"
    )

    project = ProjectFactory()
    import_file(path=write_jsonl(tmp_path / "first.jsonl", pairs[:1]), project=project)
    error = import_fails(write_jsonl(tmp_path / "second.jsonl", pairs[1:]), project=project)
    assert error.startswith("second.jsonl:1: item sha256:")
    assert Answer.objects.filter(item__project=project).count() == 2


def test_a_conversation_over_the_turn_limit_is_refused(tmp_path, settings):
    settings.IMPORT_MAX_TURNS = 3
    turns = [{"role": role, "content": "..."} for role in ("user", "assistant", "user", "assistant", "user")]
    error = import_fails(write_jsonl(tmp_path / "r.jsonl", [{"conversation": turns, "answers": ["a", "b"]}]))
    assert error == "r.jsonl:1: conversation has 5 turns, more than the limit of 3"

    # A chain of message rows 3,000 deep: refused where it passes the limit, not after a copy of its thread
    # per message.
    chain = [{"message_tree_id": "t", "message_id": "m0", "role": "prompter", "text": "Q?"}]
    for n in range(1, 3000):
        role = "assistant" if n % 2 else "prompter"
        chain.append(
            {
                "message_tree_id": "t",
                "message_id": f"m{n}",
                "parent_id": f"m{n - 1}",
                "role": role,
                "text": ".",
            }
        )
    error = import_fails(write_jsonl(tmp_path / "chain.jsonl", chain))
    assert error == "chain.jsonl:4: message m3 ends a thread of 4 turns, more than the limit of 3"


def test_limits_are_settings_that_a_file_within_them_passes(tmp_path, settings):
    row = {"prompt": "Hi?", "answers": ["yes", "no"], "ranking": [0, 1]}
    settings.IMPORT_MAX_TURNS = 1
    settings.IMPORT_MAX_TURN_CHARS = settings.IMPORT_MAX_ANSWER_CHARS = 3
    settings.ITEM_MAX_ANSWERS = 2
    settings.IMPORT_MAX_JSON_DEPTH = 2
    settings.IMPORT_MAX_LINE_BYTES = len(json.dumps(row)) + 1  # with its newline

    batch = import_file(path=write_jsonl(tmp_path / "ok.jsonl", [row]), project=ProjectFactory())

    assert (batch.items_created, batch.answers_created) == (1, 2)


# The API answers these with 400 and the line, as it does any bad file.


@pytest.fixture
def superuser_client():
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(UserFactory(is_staff=True, is_superuser=True))
    return client


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        ("\n".join(json.dumps(row) for row in ISSUE_ROWS), "up.jsonl:2: item q1 was read at line 1 with a"),
        ('{"prompt": "\\ud800", "answers": ["a", "b"]}', "up.jsonl:1: prompt contains a lone surrogate"),
        (
            '{"id": {"a": 1}, "prompt": "Hi?", "answers": ["a", "b"]}',
            "up.jsonl:1: id must be a string, not an",
        ),
        ('{"n": ' + "[" * 5000 + "]" * 5000 + "}", "up.jsonl:1: JSON nested deeper than Python can read"),
        ('{"n": ' + "9" * 5000 + "}", "up.jsonl:1: not valid JSON here: a number with more than 4300 digits"),
        (
            '{"prompt": "' + "x" * 20_000 + '"}',
            "up.jsonl:1: the line is longer than the limit of 16,384 bytes",
        ),
    ],
)
def test_the_import_api_answers_400_with_the_line(superuser_client, settings, content, detail):
    from django.core.files.uploadedfile import SimpleUploadedFile

    settings.IMPORT_MAX_LINE_BYTES = 16_384  # over the deep and long-number lines above, under the last
    project = ProjectFactory()

    response = superuser_client.post(
        f"/api/projects/{project.pk}/import/",
        {"file": SimpleUploadedFile("up.jsonl", content.encode() + b"\n")},
        format="multipart",
    )

    assert response.status_code == 400, response.content
    assert response.json()["detail"].startswith(detail)
    assert not Item.objects.exists() and not ImportBatch.objects.exists()
