"""Undo: an annotator reopens a ranking within the project's window; the change replaces it everywhere."""

import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from annotation.assignment import assignment_next, ranking_submit
from annotation.exports import ExportError, ExportFilters, export_rows, export_source_fingerprint
from annotation.exports.reading import annotator_pseudonym
from annotation.models import ExportSnapshot, Ranking, RankingRevision
from annotation.progress import annotator_progress
from annotation.revisions import ranking_revise
from tests.factories import ItemFactory, ProjectFactory, UserFactory
from training import execution

pytestmark = pytest.mark.django_db


def _ranked(project, person):
    assignment = assignment_next(annotator=person, project=project)
    shown = list(assignment.answer_order)
    ranking, _ = ranking_submit(
        assignment_id=assignment.pk, annotator=person, order=[[a] for a in shown], seconds_spent=3.0
    )
    return ranking, shown


@pytest.fixture
def world(annotator_client, annotator):
    project = ProjectFactory(rankings_per_item=2)
    ItemFactory(project=project, answers=["a", "b", "c"])
    ranking, shown = _ranked(project, annotator)
    return project, ranking, shown


def test_my_rankings_lists_mine_with_the_window_and_the_page_links_to_change_it(
    world, annotator_client, client, annotator
):
    project, ranking, _ = world
    _ranked(project, UserFactory())  # someone else's

    listed = annotator_client.get(f"/api/projects/{project.pk}/my-rankings/").json()
    client.force_login(annotator)
    page = client.get(f"/projects/{project.pk}/mine/").content.decode()

    assert [line["id"] for line in listed] == [ranking.pk]
    assert listed[0]["editable_until"] is not None and listed[0]["revisions"] == 0
    assert f"?revise={ranking.pk}" in page


def test_a_change_replaces_the_ranking_everywhere_and_keeps_the_old_one(
    world, annotator_client, annotator, media, settings
):
    settings.PROJECT_PROGRESS_CACHE_SECONDS = 0
    project, ranking, shown = world
    before = export_source_fingerprint(project=project)
    trained_before = execution._rankings_snapshot(project=project)
    reopened = annotator_client.get(f"/api/rankings/{ranking.pk}/reopen/").json()
    new_order = [[a] for a in reversed(shown)]

    response = annotator_client.post(
        f"/api/rankings/{ranking.pk}/revise/",
        {"order": new_order, "comment": "second thoughts", "seconds_spent": 2.0},
        format="json",
    )

    assert reopened["order"] == [[a] for a in shown] and [a["id"] for a in reopened["answers"]] == shown
    assert response.status_code == 200, response.json()
    assert response.json()["revisions"] == 1
    ranking.refresh_from_db()
    assert ranking.order == new_order and ranking.order_changed is True and ranking.seconds_spent == 5.0
    old = RankingRevision.objects.get(ranking=ranking)
    assert old.order == [[a] for a in shown] and old.order_changed is False
    rows = list(export_rows(project=project, format="rankings", filters=ExportFilters()))
    assert [r["ranking"] for r in rows] == [new_order] and rows[0]["comment"] == "second thoughts"
    assert Ranking.objects.filter(item__project=project).count() == 1
    ranking.item.refresh_from_db()
    assert ranking.item.human_ranking_count == 1  # the counters: still one ranking of the item
    progress = annotator_progress(annotator=annotator, project=project)
    assert (progress["mine_total"], progress["project_done"]) == (1, 1)
    consensus = list(export_rows(project=project, format="consensus", filters=ExportFilters()))
    assert [(r["ranking"], r["n_annotators"]) for r in consensus] == [(new_order, 1)]
    assert export_source_fingerprint(project=project) != before  # snapshots and figures are made again
    # The next training run takes a new snapshot, with the new version only.
    trained_after = execution._rankings_snapshot(project=project)
    with trained_after.file.open("rb") as lines:
        assert [json.loads(line)["ranking"] for line in lines] == [new_order]
    assert trained_after.pk != trained_before.pk and trained_after.row_count == 1


def test_a_ranking_past_the_window_or_of_someone_else_cannot_be_changed(world, annotator_client):
    project, ranking, shown = world
    other, _ = _ranked(project, UserFactory())
    Ranking.objects.filter(pk=ranking.pk).update(created_at=timezone.now() - timedelta(hours=25))
    body = {"order": [[a] for a in reversed(shown)]}

    late = annotator_client.post(f"/api/rankings/{ranking.pk}/revise/", body, format="json")
    not_mine = annotator_client.post(f"/api/rankings/{other.pk}/revise/", body, format="json")

    assert late.status_code == 409 and "no longer be changed" in late.json()["detail"]
    assert not_mine.status_code == 404
    assert not RankingRevision.objects.exists()


def test_a_project_with_no_window_allows_no_changes(world, annotator_client):
    project, ranking, shown = world
    project.revision_window_hours = 0
    project.save()

    response = annotator_client.get(f"/api/rankings/{ranking.pk}/reopen/")

    assert response.status_code == 409 and "does not allow" in response.json()["detail"]


def test_changed_since_brings_the_rankings_changed_after_a_moment_which_since_leaves_out(
    world, annotator, capsys
):
    project, ranking, shown = world
    other, _ = _ranked(project, UserFactory())
    two_hours_ago = timezone.now() - timedelta(hours=2)
    Ranking.objects.filter(pk__in=[ranking.pk, other.pk]).update(created_at=two_hours_ago)
    moment = timezone.now() - timedelta(hours=1)  # the last incremental download
    new_order = [[a] for a in reversed(shown)]

    ranking_revise(ranking_id=ranking.pk, annotator=annotator, order=new_order)

    def exported(**filters):
        return [
            (row["annotator"], row["ranking"])
            for row in export_rows(project=project, format="rankings", filters=ExportFilters(**filters))
        ]

    ranking.refresh_from_db()
    assert ranking.changed_at >= moment and ranking.created_at < moment
    assert exported(since=moment) == []  # by creation: the change is missed
    assert exported(changed_since=moment) == [(annotator_pseudonym(annotator.pk), new_order)]
    assert len(exported()) == 2
    capsys.readouterr()
    call_command(
        "export_data", "--project", project.name, "--format", "rankings", "-o", "-",
        "--changed-since", moment.isoformat(), "--no-progress",
    )  # fmt: skip
    assert [json.loads(line)["ranking"] for line in capsys.readouterr().out.splitlines()] == [new_order]
    assert ExportFilters.from_mapping({"changed_since": "2026-01-31"}).changed_since.year == 2026
    with pytest.raises(ExportError, match="changed_since must be a date"):
        ExportFilters.from_mapping({"changed_since": "yesterday"})


@pytest.mark.django_db(transaction=True)
def test_the_migration_dates_rankings_changed_before_it_and_gives_snapshots_changed_since():
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before = [("annotation", "0016_export_filters_include_gold")]
    after = [("annotation", "0017_ranking_changed_at")]
    filters_at_0016 = {k: v for k, v in ExportFilters().as_dict().items() if k != "changed_since"}
    executor = MigrationExecutor(connection)
    try:
        executor.migrate(before)
        old = executor.loader.project_state(before).apps
        item = ItemFactory(project=ProjectFactory())
        person = UserFactory()
        Ranking_ = old.get_model("annotation", "Ranking")
        changed = Ranking_.objects.create(item_id=item.pk, annotator_id=person.pk, source="human", order=[])
        untouched = Ranking_.objects.create(item_id=item.pk, annotator_id=UserFactory().pk, source="human")
        revisions = old.get_model("annotation", "RankingRevision").objects
        for days in (3, 1):
            revision = revisions.create(ranking_id=changed.pk, ranked_at=timezone.now())
            revisions.filter(pk=revision.pk).update(replaced_at=timezone.now() - timedelta(days=days))
        old.get_model("annotation", "ExportSnapshot").objects.create(
            project_id=item.project_id, format="rankings", file="a.jsonl", sha256="0", filters=filters_at_0016
        )

        executor.loader.build_graph()
        executor.migrate(after)

        newest = RankingRevision.objects.filter(ranking_id=changed.pk).order_by("-replaced_at").first()
        assert Ranking.objects.get(pk=changed.pk).changed_at == newest.replaced_at
        assert Ranking.objects.get(pk=untouched.pk).changed_at is None
        assert ExportSnapshot.objects.get().filters == ExportFilters().as_dict()
        executor.loader.build_graph()
        executor.migrate(before)
        assert old.get_model("annotation", "ExportSnapshot").objects.get().filters == filters_at_0016
    finally:
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
