"""A project's work order (coverage, random, model) and disputed items that come back for more rankings."""

import pytest
from django.db import connection

from annotation.assignment import assignment_next, free_item_query, ranking_submit
from annotation.models import Item, Project
from annotation.projects import ProjectInvalid, project_save, project_values_validate
from annotation.work_order import SATISFIED_PRIORITY, dispute_reason
from tests.factories import ItemFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


def _rank(annotator, project, order=None) -> Item | None:
    """Take the next item and rank its answers (in `order` of positions, or as offered); the item."""
    assignment = assignment_next(annotator=annotator, project=project)
    if assignment is None:
        return None
    ids = list(assignment.answer_order)
    if order is not None:
        by_position = dict(Item.objects.get(pk=assignment.item_id).answers.values_list("position", "id"))
        ids = [by_position[position] for position in order]
    ranking_submit(assignment_id=assignment.pk, annotator=annotator, order=[[i] for i in ids])
    return Item.objects.get(pk=assignment.item_id)


def test_work_order_and_ranking_limit_are_validated():
    assert project_values_validate(values={"work_order": "model"})["work_order"] == "model"
    with pytest.raises(ProjectInvalid) as caught:
        project_values_validate(values={"work_order": "uncertain"})
    assert "work_order" in caught.value.errors
    with pytest.raises(ProjectInvalid) as caught:
        project_values_validate(values={"rankings_per_item": 3, "max_rankings_per_item": 2})
    assert "max_rankings_per_item" in caught.value.errors
    for bad in (0, True, "5", 10_000):
        with pytest.raises(ProjectInvalid):
            project_values_validate(values={"max_rankings_per_item": bad})
    project = project_save(project=Project(name="loop", work_order="model", max_rankings_per_item=5))
    assert (project.work_order, project.max_rankings_per_item) == ("model", 5)


def test_model_order_hands_out_the_most_informative_free_item_first():
    project = ProjectFactory(work_order="model", rankings_per_item=1)
    low, high, middle = (ItemFactory(project=project, model_priority=p) for p in (0.1, 0.9, 0.5))
    annotators = UserFactory.create_batch(3)
    leased = [assignment_next(annotator=a, project=project).item_id for a in annotators]
    assert leased == [high.pk, middle.pk, low.pk]


def test_model_order_never_gives_an_item_twice_to_one_person_and_sinks_finished_items():
    project = ProjectFactory(work_order="model", rankings_per_item=2)
    first, second = (
        ItemFactory(project=project, model_priority=0.8),
        ItemFactory(project=project, model_priority=0.2),
    )
    alice, bob = UserFactory(), UserFactory()
    assert _rank(alice, project).pk == first.pk
    assert _rank(alice, project).pk == second.pk
    assert _rank(alice, project) is None
    assert _rank(bob, project).pk == first.pk
    first.refresh_from_db()
    assert first.human_ranking_count == 2 and first.model_priority == SATISFIED_PRIORITY
    second.refresh_from_db()
    assert second.model_priority == 0.2  # still needs one ranking


def test_new_items_get_a_neutral_priority():
    project = ProjectFactory(work_order="model")
    item = Item.objects.create(project=project, conversation=[{"role": "user", "content": "hi"}])
    item.refresh_from_db()
    assert item.model_priority == 0.5 and item.scored_version is None


@pytest.mark.parametrize(
    ("work_order", "index"), [("coverage", "item_project_need_idx"), ("model", "item_project_model_idx")]
)
def test_finding_work_is_one_index_scan_in_each_indexed_order(work_order, index):
    project = ProjectFactory(work_order=work_order)
    Item.objects.bulk_create(
        Item(
            project=project, conversation=[{"role": "user", "content": f"q{n}"}], model_priority=(n % 97) / 97
        )
        for n in range(3000)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE annotation_item")
    sql, params = free_item_query(annotator=UserFactory(), project=project)
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(line for (line,) in cursor.fetchall())
    assert f"Index Scan using {index} on annotation_item" in plan
    assert "Seq Scan on annotation_item" not in plan
    assert "Sort" not in plan


def test_random_order_still_fills_each_item_exactly():
    project = ProjectFactory(work_order="random", rankings_per_item=2)
    ItemFactory.create_batch(5, project=project)
    for annotator in UserFactory.create_batch(3):
        while _rank(annotator, project) is not None:
            pass
    assert list(Item.objects.filter(project=project).values_list("human_ranking_count", flat=True)) == [2] * 5


def test_split_annotators_bring_an_item_back_only_up_to_the_project_limit():
    project = ProjectFactory(work_order="model", rankings_per_item=2, max_rankings_per_item=3)
    item = ItemFactory(project=project, answers=3)
    _rank(UserFactory(), project, order=[0, 1, 2])
    _rank(UserFactory(), project, order=[2, 1, 0])
    item.refresh_from_db()
    assert item.extra_rankings == 1 and "split" in item.disputed_reason
    assert _rank(UserFactory(), project, order=[1, 0, 2]).pk == item.pk
    item.refresh_from_db()
    # Still split, but the project's limit of 3 rankings is reached: it does not come back again.
    assert (item.human_ranking_count, item.extra_rankings) == (3, 1)
    assert assignment_next(annotator=UserFactory(), project=project) is None


def test_agreeing_annotators_do_not_bring_an_item_back():
    project = ProjectFactory(rankings_per_item=2, max_rankings_per_item=5)
    item = ItemFactory(project=project, answers=3)
    _rank(UserFactory(), project, order=[0, 1, 2])
    _rank(UserFactory(), project, order=[0, 1, 2])
    item.refresh_from_db()
    assert item.extra_rankings == 0 and item.disputed_reason == ""


def test_without_a_limit_disputed_items_do_not_come_back():
    project = ProjectFactory(rankings_per_item=2)
    item = ItemFactory(project=project, answers=3)
    _rank(UserFactory(), project, order=[0, 1, 2])
    _rank(UserFactory(), project, order=[2, 1, 0])
    item.refresh_from_db()
    assert item.extra_rankings == 0


def test_a_model_that_confidently_prefers_another_answer_disputes_the_consensus():
    assert "model prefers answer 3" in dispute_reason(
        orders=[[[1], [2], [3]]], model_rewards={"1": -2, "3": 2}
    )
    assert dispute_reason(orders=[[[1], [2], [3]]], model_rewards={"1": 0.1, "3": 0.3}) == ""
    assert dispute_reason(orders=[[[1], [2], [3]]], model_rewards={"1": 2, "3": -2}) == ""


def test_staff_set_the_work_order_over_the_api_and_bad_values_are_named(staff_client):
    project = ProjectFactory(rankings_per_item=3)
    changed = staff_client.patch(
        f"/api/projects/{project.pk}/", {"work_order": "model", "max_rankings_per_item": 5}, format="json"
    )
    refused = staff_client.patch(f"/api/projects/{project.pk}/", {"max_rankings_per_item": 2}, format="json")
    unknown = staff_client.patch(f"/api/projects/{project.pk}/", {"work_order": "entropy"}, format="json")

    assert changed.status_code == 200 and changed.json()["work_order"] == "model"
    assert refused.status_code == 400 and "max_rankings_per_item" in refused.json()["errors"]
    assert unknown.status_code == 400 and "work_order" in unknown.json()["errors"]
    project.refresh_from_db()
    assert (project.work_order, project.max_rankings_per_item) == ("model", 5)


def test_the_admin_form_sets_the_work_order(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    project = ProjectFactory(name="Loop", rankings_per_item=2)
    form = {
        "name": "Loop",
        "guidelines": "",
        "rankings_per_item": "2",
        "allow_ties": "on",
        "flag_labels": '["spam"]',
        "is_active": "on",
        "retrain_min_new_rankings": "50",
        "training_arguments": "{}",
        "work_order": "model",
        "max_rankings_per_item": "1",
        "revision_window_hours": "24",
        "gold_rate": "0.05",
        "calibration_items": "0",
    }
    refused = client.post(f"/admin/annotation/project/{project.pk}/change/", form)
    assert refused.status_code == 200 and "may not be below rankings_per_item" in refused.content.decode()
    saved = client.post(
        f"/admin/annotation/project/{project.pk}/change/", {**form, "max_rankings_per_item": "4"}
    )
    assert saved.status_code == 302
    project.refresh_from_db()
    assert (project.work_order, project.max_rankings_per_item) == ("model", 4)
