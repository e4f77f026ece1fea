"""Gold items in exports: left out by default, their people's rankings on request, wherever filters go."""

import importlib
import json

import pytest
from django.apps import apps as django_apps
from django.core.management import call_command

from annotation import gold
from annotation.exports import (
    ExportFilters,
    ExportProgress,
    export_item_count,
    export_rows,
    export_snapshot_create,
    export_snapshot_latest,
)
from annotation.models import ExportSnapshot
from tests.factories import ItemFactory, ProjectFactory, RankingFactory, UserFactory

pytestmark = pytest.mark.django_db

gold_migration = importlib.import_module("annotation.migrations.0016_export_filters_include_gold")


@pytest.fixture
def project(db):
    """An ordinary item and a gold item, each ranked by the same two people, who differ on the last two."""
    project = ProjectFactory(name="Gold export")
    people = [UserFactory() for _ in range(2)]
    project.ordinary, project.gold = ItemFactory(project=project), ItemFactory(project=project)
    for item in (project.ordinary, project.gold):
        ids = [a.pk for a in item.answers.order_by("position")]
        for person, order in zip(people, [ids, [ids[0], ids[2], ids[1]]], strict=True):
            RankingFactory(item=item, annotator=person, order=[[i] for i in order])
    # The known ranking reverses the first person's: it must show up in no row.
    known = [[a.pk] for a in project.gold.answers.order_by("-position")]
    gold.gold_item_set(item=project.gold, order=known)
    return project


def _items(rows):
    return sorted({row["item_id"] for row in rows})


@pytest.mark.parametrize("format", ["rankings", "pairs", "pairs-chat", "consensus", "oasst"])
def test_gold_items_are_left_out_by_default(project, format):
    rows = list(export_rows(project=project, format=format, filters=ExportFilters()))
    if format == "oasst":
        assert len(rows) == 1  # one tree per item, and its rows name no item id
    else:
        assert _items(rows) == [project.ordinary.pk]
    assert len(rows) == len(list(export_rows(project=project, format=format, filters=None)))


def test_with_include_gold_the_rankings_of_gold_items_come_as_any_items(project):
    rows = list(export_rows(project=project, format="rankings", filters=ExportFilters(include_gold=True)))
    assert _items(rows) == [project.ordinary.pk, project.gold.pk]
    gold_rows = [row for row in rows if row["item_id"] == project.gold.pk]
    ordinary_rows = [row for row in rows if row["item_id"] == project.ordinary.pk]
    assert len(gold_rows) == 2  # the two people's, and no row for the known ranking
    assert [set(row) for row in gold_rows] == [set(row) for row in ordinary_rows]  # the same shape
    ids = [a.pk for a in project.gold.answers.order_by("position")]
    assert [row["ranking"] for row in gold_rows] == [
        [[ids[0]], [ids[1]], [ids[2]]],
        [[ids[0]], [ids[2]], [ids[1]]],
    ]


def test_with_include_gold_pairs_and_consensus_take_the_people_not_the_known_ranking(project):
    filters = ExportFilters(include_gold=True)
    pairs = list(export_rows(project=project, format="pairs", filters=filters))
    assert len([row for row in pairs if row["item_id"] == project.gold.pk]) == 6  # 3 pairs from each of 2
    consensus = {
        row["item_id"]: row for row in export_rows(project=project, format="consensus", filters=filters)
    }
    assert set(consensus) == {project.ordinary.pk, project.gold.pk}
    assert consensus[project.gold.pk]["n_annotators"] == 2
    ids = [a.pk for a in project.gold.answers.order_by("position")]
    assert consensus[project.gold.pk]["ranking"] == [[ids[0]], sorted(ids[1:])]
    assert set(consensus[project.gold.pk]) == set(consensus[project.ordinary.pk])
    from_consensus = ExportFilters(include_gold=True, pairs_from="consensus")
    pairs = list(export_rows(project=project, format="pairs", filters=from_consensus))
    best = project.gold.answers.get(pk=ids[0]).text
    gold_pairs = [row for row in pairs if row["item_id"] == project.gold.pk]
    assert len(gold_pairs) == 2 and all(row["chosen"] == best for row in gold_pairs)  # first, then a tie
    assert len(list(export_rows(project=project, format="oasst", filters=filters))) == 2


def test_the_progress_total_is_the_items_the_export_walks_through(project):
    """export_data's progress bar ends at its total: the gold items count only when they are exported."""
    walked = {}
    for include_gold in (False, True):
        progress = ExportProgress()
        filters = ExportFilters(include_gold=include_gold)
        list(export_rows(project=project, format="rankings", filters=filters, progress=progress))
        walked[include_gold] = progress.items_read

    assert walked == {False: 1, True: 2}
    assert export_item_count(project=project) == walked[False]
    assert export_item_count(project=project, filters=ExportFilters(include_gold=True)) == walked[True]


def test_the_filter_parses_like_the_other_booleans():
    assert ExportFilters.from_mapping({"include_gold": "true"}).include_gold is True
    assert ExportFilters.from_mapping({"include_gold": "0"}).include_gold is False
    assert ExportFilters.from_mapping({"include_gold": ""}).include_gold is False
    assert ExportFilters().as_dict()["include_gold"] is False
    with pytest.raises(ValueError, match="include_gold must be true or false"):
        ExportFilters.from_mapping({"include_gold": "sometimes"})


def test_the_export_command_takes_gold_items_with_include_gold(project, tmp_path):
    out = tmp_path / "rankings.jsonl"
    call_command(
        "export_data", "--project", "Gold export", "--format", "rankings", "-o", str(out), "--no-progress"
    )
    assert _items(json.loads(line) for line in out.read_text().splitlines()) == [project.ordinary.pk]
    call_command(
        "export_data",
        *("--project", "Gold export", "--format", "rankings", "-o", str(out), "--no-progress"),
        "--include-gold",
    )
    assert _items(json.loads(line) for line in out.read_text().splitlines()) == [
        project.ordinary.pk,
        project.gold.pk,
    ]


def _api_items(staff_client, project, query):
    response = staff_client.get(f"/api/projects/{project.pk}/export/?format=pairs{query}")
    assert response.status_code == 200
    return _items(json.loads(line) for line in b"".join(response.streaming_content).splitlines())


def test_the_export_api_takes_gold_items_with_include_gold(project, staff_client):
    assert _api_items(staff_client, project, "") == [project.ordinary.pk]
    assert _api_items(staff_client, project, "&include_gold=false") == [project.ordinary.pk]
    assert _api_items(staff_client, project, "&include_gold=true") == [project.ordinary.pk, project.gold.pk]


def test_the_export_api_refuses_an_include_gold_that_is_no_boolean_and_names_it(project, staff_client):
    response = staff_client.get(f"/api/projects/{project.pk}/export/?format=pairs&include_gold=perhaps")
    assert response.status_code == 400
    assert "include_gold" in response.json()["detail"]
    response = staff_client.get(f"/api/projects/{project.pk}/agreement/?include_gold=perhaps")
    assert response.status_code == 400 and "include_gold" in response.json()["detail"]


def test_the_schema_documents_include_gold_on_the_export_and_agreement(staff_client):
    document = staff_client.get("/api/schema/?format=json").json()
    for path in ("/api/projects/{project_id}/export/", "/api/projects/{project_id}/agreement/"):
        parameters = {p["name"]: p for p in document["paths"][path]["get"]["parameters"]}
        assert parameters["include_gold"]["schema"]["type"] == "boolean"


def test_the_data_page_form_offers_gold_items_left_out_first(project, staff, client):
    client.force_login(staff)
    html = client.get(f"/projects/{project.pk}/data/").content.decode()
    select = html[html.index('<select name="include_gold">') :]
    select = select[: select.index("</select>")]
    assert select.index('value="false"') < select.index('value="true"')  # the first option is the default


def test_a_snapshot_with_gold_items_is_another_snapshot_and_training_never_takes_it(project, media):
    without = export_snapshot_create(project=project, format="rankings")
    with_gold = export_snapshot_create(project=project, format="rankings", filters={"include_gold": True})
    assert with_gold is not None and with_gold.pk != without.pk
    assert (without.item_count, with_gold.item_count) == (1, 2)
    assert with_gold.sha256 != without.sha256
    assert (without.filters["include_gold"], with_gold.filters["include_gold"]) == (False, True)
    # Training asks for the default filters (training.execution._rankings_snapshot): the one without.
    assert export_snapshot_latest(project=project, format="rankings") == without
    assert (
        export_snapshot_create(project=project, format="rankings", filters={"include_gold": "true"}) is None
    )


def test_after_the_migration_an_unchanged_project_gets_no_new_snapshot(project, media):
    written = export_snapshot_create(project=project, format="rankings")
    before_the_filter = {k: v for k, v in written.filters.items() if k != "include_gold"}
    ExportSnapshot.objects.filter(pk=written.pk).update(filters=before_the_filter)
    assert export_snapshot_latest(project=project, format="rankings") is None  # why the migration is needed

    gold_migration.add_include_gold(django_apps, None)

    assert ExportSnapshot.objects.get(pk=written.pk).filters == ExportFilters().as_dict()
    assert export_snapshot_create(project=project, format="rankings") is None


@pytest.mark.django_db(transaction=True)
def test_the_migration_adds_include_gold_to_stored_filters_and_takes_it_off_again():
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before = [("annotation", "0015_import_gold")]
    after = [("annotation", "0016_export_filters_include_gold")]
    old_filters = {
        "since": None,
        "until": None,
        "min_annotators": 1,
        "include_imported": True,
        "exclude_not_rankable": False,
        "exclude_flagged": False,
        "pairs_from": "rankings",
    }
    executor = MigrationExecutor(connection)
    try:
        executor.migrate(before)
        old = executor.loader.project_state(before).apps
        project = old.get_model("annotation", "Project").objects.create(name="Before include_gold")
        for file, filters in [("a.jsonl", old_filters), ("b.jsonl", {**old_filters, "min_annotators": 2})]:
            old.get_model("annotation", "ExportSnapshot").objects.create(
                project_id=project.pk, format="rankings", file=file, sha256="0", filters=filters
            )

        executor.loader.build_graph()
        executor.migrate(after)
        new = executor.loader.project_state(after).apps
        snapshots = new.get_model("annotation", "ExportSnapshot").objects.order_by("file")
        assert [s.filters for s in snapshots] == [
            {**old_filters, "include_gold": False},
            {**old_filters, "min_annotators": 2, "include_gold": False},
        ]
        # Written after the upgrade with gold items: back in the old code it must not pass for one without.
        new.get_model("annotation", "ExportSnapshot").objects.create(
            project_id=project.pk,
            format="rankings",
            file="c.jsonl",
            sha256="0",
            filters={**old_filters, "include_gold": True},
        )

        executor.loader.build_graph()
        executor.migrate(before)
        snapshots = old.get_model("annotation", "ExportSnapshot").objects.order_by("file")
        assert [s.filters for s in snapshots] == [
            old_filters,
            {**old_filters, "min_annotators": 2},
            {**old_filters, "include_gold": True},
        ]
    finally:
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
