"""The free-item scan stays short when little or no work is left, and finished items come back when needed."""

import pytest
from django.db import connection

from annotation.assignment import assignment_next, free_item_query, ranking_submit
from annotation.models import Item
from annotation.projects import project_save
from annotation.work_order import SATISFIED_PRIORITY
from tests.factories import ItemFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


def _plan(project) -> str:
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE annotation_item")
    sql, params = free_item_query(annotator=UserFactory(), project=project)
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(line for (line,) in cursor.fetchall())


@pytest.mark.parametrize(
    ("work_order", "bound"),
    [("coverage", "human_ranking_count < 1"), ("model", "model_priority > '-1'")],
)
def test_a_finished_project_is_answered_from_the_index_bounds(work_order, bound):
    project = ProjectFactory(work_order=work_order, rankings_per_item=1)
    Item.objects.bulk_create(
        Item(
            project=project,
            conversation=[{"role": "user", "content": f"q{n}"}],
            human_ranking_count=1,
            model_priority=SATISFIED_PRIORITY,
        )
        for n in range(3000)
    )
    plan = _plan(project)
    index_cond = next(line for line in plan.splitlines() if "Index Cond" in line and "project_id" in line)
    assert bound in index_cond, plan
    assert assignment_next(annotator=UserFactory(), project=project) is None


def test_finished_items_come_back_in_the_model_order_when_more_rankings_are_wanted():
    project = ProjectFactory(work_order="model", rankings_per_item=1)
    item = ItemFactory(project=project, model_priority=0.7)
    annotator = UserFactory()
    lease = assignment_next(annotator=annotator, project=project)
    ranking_submit(assignment_id=lease.pk, annotator=annotator, order=[[a] for a in lease.answer_order])
    item.refresh_from_db()
    assert item.model_priority == SATISFIED_PRIORITY
    assert assignment_next(annotator=UserFactory(), project=project) is None

    project.rankings_per_item = 2
    project_save(project=project)

    assert assignment_next(annotator=UserFactory(), project=project).item_id == item.pk
