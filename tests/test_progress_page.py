"""The staff page of a project's progress, and the progress figures behind it."""

import pytest
from django.test import Client

from annotation.assignment import assignment_next, assignment_skip, ranking_submit
from annotation.gold import gold_item_set
from annotation.progress import annotator_progress, project_annotator_stats, project_item_status_counts
from tests.factories import STAFF_PERMISSIONS, ItemFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_project_totals(settings):
    settings.PROJECT_PROGRESS_CACHE_SECONDS = 0


def _rank(annotator, project, **extra):
    assignment = assignment_next(annotator=annotator, project=project)
    order = [[answer_id] for answer_id in assignment.answer_order]
    return ranking_submit(assignment_id=assignment.pk, annotator=annotator, order=order, **extra)[0]


@pytest.fixture
def busy_project():
    """Four items wanting two rankings each: one done, two half done (one leased now), one untouched."""
    project = ProjectFactory(name="Helpfulness", rankings_per_item=2, flag_labels=["spam"])
    first, second, third = ItemFactory.create_batch(3, project=project)
    alice, bob, carol = (UserFactory(username=name) for name in ("alice", "bob", "carol"))
    # Least-ranked items come first, so each call below lands on the item named in its comment.
    assert _rank(alice, project, seconds_spent=10, comment="<b>loud</b> comment").item_id == first.pk
    assert _rank(bob, project, seconds_spent=20).item_id == second.pk
    assert _rank(alice, project).item_id == third.pk
    assert _rank(bob, project).item_id == first.pk  # first is done
    skipped = assignment_next(annotator=carol, project=project)
    assert skipped.item_id == second.pk
    assignment_skip(assignment_id=skipped.pk, annotator=carol)
    assert assignment_next(annotator=carol, project=project).item_id == third.pk
    ItemFactory(project=project)  # waiting
    return project


def _staff_client() -> Client:
    client = Client()
    client.force_login(UserFactory(is_staff=True, permissions=STAFF_PERMISSIONS))
    return client


def test_item_status_counts_split_done_in_progress_and_waiting(busy_project):
    counts = project_item_status_counts(project=busy_project)
    assert (counts.total, counts.done, counts.in_progress, counts.waiting) == (4, 1, 2, 1)
    assert counts.open_leases == 1


def test_annotator_stats_count_rankings_skips_and_open_leases(busy_project):
    rows = project_annotator_stats(project=busy_project)
    assert [row.username for row in rows] == ["alice", "bob", "carol"]
    stats = {row.username: row for row in rows}
    assert (stats["alice"].rankings, stats["alice"].today, stats["alice"].avg_seconds) == (2, 2, 10)
    assert (stats["bob"].rankings, stats["bob"].skipped, stats["bob"].avg_seconds) == (2, 0, 20)
    assert (stats["carol"].rankings, stats["carol"].skipped, stats["carol"].open_leases) == (0, 1, 1)


def test_annotator_progress_counts_mine_and_the_projects(busy_project):
    alice = busy_project.items.first().rankings.get(annotator__username="alice").annotator
    progress = annotator_progress(annotator=alice, project=busy_project)
    assert progress == {"mine_today": 2, "mine_total": 2, "project_done": 4, "project_wanted": 8}


def test_gold_items_are_counted_apart_from_the_items_and_rankings_wanted(busy_project):
    alice = busy_project.items.first().rankings.get(annotator__username="alice").annotator
    golden = ItemFactory(project=busy_project, answers=["a", "b"])
    gold_item_set(item=golden, order=[[a] for a in golden.answers.values_list("pk", flat=True)])
    busy_project.gold_rate = 1.0
    for person in (alice, UserFactory(), UserFactory()):  # everyone ranks it, beyond rankings_per_item
        assert _rank(person, busy_project).item_id == golden.pk

    counts = project_item_status_counts(project=busy_project)
    progress = annotator_progress(annotator=alice, project=busy_project)

    assert (counts.total, counts.done, counts.in_progress, counts.waiting, counts.gold) == (4, 1, 2, 1, 1)
    assert (progress["project_done"], progress["project_wanted"]) == (4, 8)
    assert progress["mine_total"] == 3  # the annotator's own count has it: it looked like any item
    html = _staff_client().get(f"/projects/{busy_project.pk}/progress/").content.decode()
    assert '<dd id="items-gold">1</dd>' in html and '<dd id="items-total">4</dd>' in html


def test_staff_see_the_progress_page(busy_project):
    response = _staff_client().get(f"/projects/{busy_project.pk}/progress/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Helpfulness" in html
    assert '<dd id="items-done">1</dd>' in html
    assert '<dd id="items-in-progress">2</dd>' in html
    assert '<dd id="items-waiting">1</dd>' in html
    for name in ("alice", "bob", "carol"):
        assert name in html
        # A row of the annotators' table, not just the name in the recent rankings.
        assert f'<th scope="row">{name}</th>' in html
    # Comments are annotators' free text: escaped, never markup.
    assert "&lt;b&gt;loud&lt;/b&gt; comment" in html
    assert f'href="/projects/{busy_project.pk}/data/"' in html
    assert f'href="/admin/annotation/project/{busy_project.pk}/change/"' in html


def test_an_empty_project_page_says_nobody_worked_yet():
    project = ProjectFactory()
    response = _staff_client().get(f"/projects/{project.pk}/progress/")
    assert response.status_code == 200
    assert "Nobody has worked on this project yet." in response.content.decode()


def test_annotators_are_refused_the_progress_page(busy_project):
    client = Client()
    client.force_login(UserFactory())
    assert client.get(f"/projects/{busy_project.pk}/progress/").status_code == 403


def test_signed_out_visitors_are_sent_to_log_in(busy_project, client):
    response = client.get(f"/projects/{busy_project.pk}/progress/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_a_missing_project_is_404_for_staff():
    assert _staff_client().get("/projects/987654/progress/").status_code == 404


def test_the_admin_project_page_links_to_the_progress_page(busy_project):
    admin = UserFactory(is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(admin)
    response = client.get(f"/admin/annotation/project/{busy_project.pk}/change/")
    assert response.status_code == 200
    assert f'href="/projects/{busy_project.pk}/progress/"' in response.content.decode()
