"""Care signals: whether the order was changed and the time spent, stored with each ranking and exported."""

import pytest

from annotation.assignment import assignment_next, ranking_submit
from annotation.exports import ExportFilters, export_rows
from annotation.models import Assignment
from tests.factories import ItemFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


def _rank(project, person, reorder, **extra):
    assignment = assignment_next(annotator=person, project=project)
    # Shown last answer first (the shuffle may keep the answers' own order): "untouched" is measured
    # against the order the page showed, which must not pass for the answers' own.
    shown = sorted(assignment.answer_order, reverse=True)
    Assignment.objects.filter(pk=assignment.pk).update(answer_order=shown)
    order = [[answer_id] for answer_id in reorder(shown)]
    ranking, _ = ranking_submit(assignment_id=assignment.pk, annotator=person, order=order, **extra)
    return ranking


def test_an_untouched_order_a_changed_one_and_none_acceptable_are_told_apart():
    project = ProjectFactory(rankings_per_item=3)
    ItemFactory(project=project, answers=["a", "b", "c"])

    untouched = _rank(project, UserFactory(), lambda shown: shown, seconds_spent=0.8)
    changed = _rank(project, UserFactory(), lambda shown: shown[::-1], seconds_spent=41.0)
    assignment = assignment_next(annotator=(person := UserFactory()), project=project)
    none_acceptable, _ = ranking_submit(
        assignment_id=assignment.pk, annotator=person, order=[], not_rankable=True
    )

    assert (untouched.order_changed, changed.order_changed, none_acceptable.order_changed) == (
        False,
        True,
        None,
    )


def test_the_raw_rankings_export_carries_the_care_signals_and_the_comment():
    project = ProjectFactory(rankings_per_item=2)
    ItemFactory(project=project, answers=["a", "b"])
    _rank(project, UserFactory(), lambda shown: shown, seconds_spent=0.8)
    _rank(project, UserFactory(), lambda shown: shown[::-1], seconds_spent=41.0, comment="b is wrong")

    rows = list(export_rows(project=project, format="rankings", filters=ExportFilters()))

    assert [(r["order_changed"], r["seconds_spent"], r["comment"]) for r in rows] == [
        (False, 0.8, ""),
        (True, 41.0, "b is wrong"),
    ]
