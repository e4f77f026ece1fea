"""A calibration set gets all its rankings first, and agreement says when there is not enough overlap."""

import re

import pytest

from annotation.assignment import assignment_next, ranking_submit
from annotation.models import Ranking
from tests.factories import ItemFactory, ProjectFactory, RankingFactory, UserFactory

pytestmark = pytest.mark.django_db


def _rank_next(project, person):
    lease = assignment_next(annotator=person, project=project)
    ranking_submit(assignment_id=lease.pk, annotator=person, order=[[a] for a in lease.answer_order])
    return lease.item_id


def test_the_first_items_get_all_their_rankings_before_any_other_item_gets_one():
    project = ProjectFactory(rankings_per_item=3, calibration_items=2, gold_rate=0.0)
    items = [ItemFactory(project=project, answers=["a", "b"]) for _ in range(10)]
    people = [UserFactory() for _ in range(4)]

    first_six = [_rank_next(project, person) for person in people[:3] for _ in range(2)]
    seventh = _rank_next(project, people[3])

    assert sorted(first_six) == sorted([items[0].pk, items[1].pk] * 3)
    assert seventh not in (
        items[0].pk,
        items[1].pk,
    )  # the calibration set is full: the ordinary order goes on


def test_without_a_calibration_set_the_ordinary_order_spreads_first_rankings():
    project = ProjectFactory(rankings_per_item=3, gold_rate=0.0)
    items = [ItemFactory(project=project, answers=["a", "b"]) for _ in range(4)]

    ranked = [_rank_next(project, UserFactory()) for _ in range(4)]

    assert sorted(ranked) == sorted(item.pk for item in items)


def test_agreement_says_not_enough_overlap_instead_of_trivial_figures(client, staff):
    project = ProjectFactory()
    for _ in range(3):
        RankingFactory(item=ItemFactory(project=project))
    client.force_login(staff)

    alone = client.get(f"/projects/{project.pk}/data/").content.decode()
    item = project.items.first()
    RankingFactory(item=item, order=Ranking.objects.get(item=item).order)
    shared = client.get(f"/projects/{project.pk}/data/").content.decode()

    assert "Not enough overlap yet" in alone and 'id="unanimous-best"' not in alone
    assert "Not enough overlap yet" not in shared
    assert re.search(r'id="unanimous-best">1 of 1<', shared)
