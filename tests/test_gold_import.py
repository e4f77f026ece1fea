"""Marking gold items by import: the CLI, the API (at once and queued) and the admin's upload page."""

import random

import pytest
from django.core.management import CommandError, call_command

from annotation import gold
from annotation.assignment import assignment_next
from annotation.exports import ExportFilters, export_rows
from annotation.imports import ImportFailed, import_file, import_job_create, import_job_run
from annotation.models import ImportBatch, ImportJob, Item, Ranking
from tests.factories import ProjectFactory, UserFactory
from tests.test_import_api import jsonl
from tests.test_importers import write_jsonl

pytestmark = pytest.mark.django_db

GOLD_ROWS = [
    {
        "id": "g1",
        "prompt": "Capital of France?",
        "answers": ["Lyon", "Paris", "Nice"],
        "ranking": [1, [0, 2]],
    },
    {"id": "g2", "prompt": "2 + 2?", "answers": ["4", "5"], "ranking": [0, 1]},
]


def _known(item: Item) -> list[list[str]]:
    """The item's known ranking as tie groups of answer texts, each group sorted."""
    text = dict(item.answers.values_list("pk", "text"))
    return [sorted(text[pk] for pk in group) for group in item.gold_order]


def test_a_gold_import_makes_each_row_a_gold_item_with_its_ranking_and_no_rankings(tmp_path, capsys):
    project = ProjectFactory(name="Gold", gold_rate=1.0)
    path = write_jsonl(tmp_path / "gold.jsonl", GOLD_ROWS)

    call_command("import_data", str(path), "--project", "Gold", "--gold", "--no-progress")

    assert "2 new items, 5 new answers, 2 items marked gold" in capsys.readouterr().out
    items = {item.external_id: item for item in Item.objects.filter(project=project)}
    assert _known(items["g1"]) == [["Paris"], ["Lyon", "Nice"]]
    assert _known(items["g2"]) == [["4"], ["5"]]
    assert not Ranking.objects.exists()  # the known ranking is no one's ranking
    batch = ImportBatch.objects.get()
    assert (batch.gold, batch.gold_marked, batch.rankings_created) == (True, 2, 0)
    # They are gold items like those marked in the admin: offered as gold, left out of exports.
    lease = assignment_next(annotator=UserFactory(), project=project)
    assert lease.item_id in {item.pk for item in items.values()}
    assert list(export_rows(project=project, format="rankings", filters=ExportFilters())) == []


def test_a_row_without_a_ranking_of_every_answer_fails_with_its_line_and_imports_nothing(tmp_path):
    project = ProjectFactory()
    unranked = {"id": "g3", "prompt": "Unranked?", "answers": ["a", "b"]}
    partial = {"id": "g4", "prompt": "Partly?", "answers": ["a", "b", "c"], "ranking": [2, 0]}

    with pytest.raises(
        ImportFailed, match=r"gold\.jsonl:3: item g3 cannot be gold: its row carries no ranking"
    ):
        import_file(
            path=write_jsonl(tmp_path / "gold.jsonl", [*GOLD_ROWS, unranked]), project=project, gold=True
        )
    with pytest.raises(
        ImportFailed, match=r"gold\.jsonl:1: item g4 cannot be gold: its row ranks 2 of its 3"
    ):
        import_file(path=write_jsonl(tmp_path / "gold.jsonl", [partial]), project=project, gold=True)

    assert not Item.objects.exists() and not ImportBatch.objects.exists()


def test_pair_rows_of_one_prompt_cannot_make_a_gold_item_of_more_than_two_answers(tmp_path):
    pairs = [
        {"prompt": "Why?", "chosen": "Because.", "rejected": "No."},
        {"prompt": "Why?", "chosen": "Because.", "rejected": "Dunno."},
    ]

    with pytest.raises(ImportFailed, match=r"pairs\.jsonl:\d: .*rows of one prompt merge into one item"):
        import_file(path=write_jsonl(tmp_path / "pairs.jsonl", pairs), project=ProjectFactory(), gold=True)

    assert not Item.objects.exists()
    # One pair per prompt is a gold item of two answers, chosen first.
    project = ProjectFactory()
    import_file(path=write_jsonl(tmp_path / "one.jsonl", pairs[:1]), project=project, gold=True)
    assert _known(Item.objects.get(project=project)) == [["Because."], ["No."]]


def test_importing_gold_again_adds_nothing_and_a_different_known_ranking_is_refused(tmp_path):
    project = ProjectFactory()
    path = write_jsonl(tmp_path / "gold.jsonl", GOLD_ROWS)
    import_file(path=path, project=project, gold=True)

    again = import_file(path=path, project=project, gold=True)
    assert (again.items_created, again.gold_marked) == (0, 0)

    changed = [{**GOLD_ROWS[0], "ranking": [0, 1, 2]}]
    with pytest.raises(ImportFailed, match=r"changed\.jsonl:1: item g1 already has another known ranking"):
        import_file(path=write_jsonl(tmp_path / "changed.jsonl", changed), project=project, gold=True)
    assert _known(Item.objects.get(external_id="g1")) == [["Paris"], ["Lyon", "Nice"]]

    twice = [GOLD_ROWS[1], {**GOLD_ROWS[1], "ranking": [1, 0]}]
    with pytest.raises(
        ImportFailed, match=r"twice\.jsonl:2: item g2 already has another known ranking \(from line 1\)"
    ):
        import_file(path=write_jsonl(tmp_path / "twice.jsonl", twice), project=ProjectFactory(), gold=True)


def test_a_gold_import_can_mark_items_an_earlier_import_brought(tmp_path):
    project = ProjectFactory()
    path = write_jsonl(tmp_path / "rows.jsonl", GOLD_ROWS)
    import_file(path=path, project=project)
    assert not Item.objects.filter(gold_order__isnull=False).exists()

    batch = import_file(path=path, project=project, gold=True)

    assert (batch.items_created, batch.answers_created, batch.gold_marked) == (0, 0, 2)
    assert _known(Item.objects.get(external_id="g1")) == [["Paris"], ["Lyon", "Nice"]]
    assert Ranking.objects.count() == 2  # the earlier import's rankings stay as they were


def test_the_api_imports_gold_at_once_and_queued(staff_client, media, django_capture_on_commit_callbacks):
    project = ProjectFactory()

    response = staff_client.post(
        f"/api/projects/{project.pk}/import/",
        {"file": jsonl(GOLD_ROWS[:1]), "gold": "true"},
        format="multipart",
    )

    assert response.status_code == 201, response.content
    assert (response.json()["gold"], response.json()["gold_marked"]) == (True, 1)
    with django_capture_on_commit_callbacks():
        response = staff_client.post(
            f"/api/projects/{project.pk}/import/",
            {"file": jsonl(GOLD_ROWS[1:]), "gold": "true", "background": "true"},
            format="multipart",
        )
    assert response.status_code == 202, response.content
    assert response.json()["gold"] is True
    job = import_job_run(job=ImportJob.objects.get(pk=response.json()["id"]))
    assert job.status == ImportJob.Status.SUCCEEDED, job.error
    assert set(Item.objects.filter(gold_order__isnull=False).values_list("external_id", flat=True)) == {
        "g1",
        "g2",
    }


def test_a_queued_gold_job_that_fails_says_which_line(media, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks():
        job = import_job_create(
            upload=jsonl([{"prompt": "No ranking?", "answers": ["a", "b"]}], name="g.jsonl"),
            project=ProjectFactory(),
            gold=True,
        )

    job = import_job_run(job=job)

    assert job.status == ImportJob.Status.FAILED
    assert "g.jsonl:1:" in job.error and "cannot be gold" in job.error
    assert not Item.objects.exists()


def test_staff_mark_gold_items_from_the_admin_upload(admin_client_logged_in):
    project = ProjectFactory()
    url = f"/admin/annotation/project/{project.pk}/import/"
    assert b'name="gold"' in admin_client_logged_in.get(url).content

    response = admin_client_logged_in.post(
        url, {"file": jsonl(GOLD_ROWS), "format": "auto", "gold": "on"}, follow=True
    )

    assert "2 items marked gold" in response.content.decode()
    assert Item.objects.filter(project=project, gold_order__isnull=False).count() == 2


def test_the_command_refuses_a_bad_gold_file_with_its_line(tmp_path):
    ProjectFactory(name="Gold")
    path = write_jsonl(tmp_path / "g.jsonl", [{"prompt": "?", "answers": ["a", "b"]}])

    with pytest.raises(CommandError, match=r"g\.jsonl:1: .*cannot be gold.*\nNothing was imported"):
        call_command("import_data", str(path), "--project", "Gold", "--gold", "--no-progress")


@pytest.fixture(autouse=True)
def _seeded_gold_draws(monkeypatch):
    monkeypatch.setattr(gold, "chance", random.Random(3))
