"""The assignment service: who gets which item, leases, submit and skip."""

from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from annotation.assignment import (
    AssignmentConflict,
    AssignmentNotFound,
    RankingInvalid,
    assignment_next,
    assignment_skip,
    assignments_expire,
    free_item_query,
    item_counters_recount,
    ranking_submit,
)
from annotation.models import Assignment, Item, Ranking
from tests.factories import ItemFactory, ProjectFactory, RankingFactory, UserFactory

pytestmark = pytest.mark.django_db


def _order_of(assignment: Assignment) -> list[list[int]]:
    return [[answer_id] for answer_id in assignment.answer_order]


def _expire(assignment: Assignment) -> None:
    Assignment.objects.filter(pk=assignment.pk).update(expires_at=timezone.now() - timedelta(seconds=1))


def test_next_leases_an_item_and_holds_one_slot():
    item = ItemFactory(answers=4)
    annotator = UserFactory()
    assignment = assignment_next(annotator=annotator, project=item.project)
    assert assignment.item_id == item.pk
    assert assignment.status == Assignment.Status.OPEN
    assert assignment.expires_at > timezone.now() + timedelta(minutes=29)
    assert sorted(assignment.answer_order) == sorted(item.answers.values_list("pk", flat=True))
    item.refresh_from_db()
    assert (item.open_lease_count, item.human_ranking_count) == (1, 0)


def test_asking_again_returns_the_same_lease_in_the_same_order():
    project = ProjectFactory()
    ItemFactory.create_batch(3, project=project, answers=4)
    annotator = UserFactory()
    first = assignment_next(annotator=annotator, project=project)
    again = assignment_next(annotator=annotator, project=project)
    assert again.pk == first.pk
    assert again.answer_order == first.answer_order
    assert Assignment.objects.filter(annotator=annotator).count() == 1


def test_answer_order_is_shuffled_per_assignment():
    project = ProjectFactory(rankings_per_item=30)
    item = ItemFactory(project=project, answers=4)
    leases = [assignment_next(annotator=UserFactory(), project=project) for _ in range(20)]
    orders = {tuple(lease.answer_order) for lease in leases}
    # 20 draws of 24 permutations all landing on one order has probability 24**-19.
    assert len(orders) > 1
    assert all(sorted(order) == sorted(item.answers.values_list("pk", flat=True)) for order in orders)


def test_second_annotator_cannot_take_a_full_item():
    project = ProjectFactory(rankings_per_item=1)
    ItemFactory(project=project)
    assert assignment_next(annotator=UserFactory(), project=project) is not None
    assert assignment_next(annotator=UserFactory(), project=project) is None


def test_an_item_is_shared_up_to_the_wanted_rankings():
    project = ProjectFactory(rankings_per_item=2)
    item = ItemFactory(project=project)
    first = assignment_next(annotator=UserFactory(), project=project)
    second = assignment_next(annotator=UserFactory(), project=project)
    assert first.item_id == second.item_id == item.pk
    assert assignment_next(annotator=UserFactory(), project=project) is None


def test_items_with_fewest_rankings_are_offered_first():
    project = ProjectFactory(rankings_per_item=3)
    busy = ItemFactory(project=project)
    RankingFactory(item=busy)
    Item.objects.filter(pk=busy.pk).update(human_ranking_count=1)
    fresh = ItemFactory(project=project)
    assert assignment_next(annotator=UserFactory(), project=project).item_id == fresh.pk


def test_an_item_is_never_offered_again_to_someone_who_ranked_it():
    project = ProjectFactory(rankings_per_item=3)
    ItemFactory(project=project)
    annotator = UserFactory()
    assignment = assignment_next(annotator=annotator, project=project)
    ranking_submit(assignment_id=assignment.pk, annotator=annotator, order=_order_of(assignment))
    assert assignment_next(annotator=annotator, project=project) is None
    assert assignment_next(annotator=UserFactory(), project=project) is not None


def test_a_ranking_made_outside_the_work_loop_also_counts_as_ranked():
    project = ProjectFactory(rankings_per_item=3)
    ranking = RankingFactory(item=ItemFactory(project=project))
    assert assignment_next(annotator=ranking.annotator, project=project) is None


def test_a_skipped_item_is_not_offered_again_and_its_slot_is_freed():
    project = ProjectFactory(rankings_per_item=1)
    item = ItemFactory(project=project)
    annotator = UserFactory()
    assignment = assignment_next(annotator=annotator, project=project)
    skipped = assignment_skip(assignment_id=assignment.pk, annotator=annotator)
    assert skipped.status == Assignment.Status.SKIPPED
    item.refresh_from_db()
    assert item.open_lease_count == 0
    assert assignment_next(annotator=annotator, project=project) is None
    assert assignment_next(annotator=UserFactory(), project=project).item_id == item.pk


def test_skipping_twice_is_harmless():
    item = ItemFactory()
    annotator = UserFactory()
    assignment = assignment_next(annotator=annotator, project=item.project)
    assignment_skip(assignment_id=assignment.pk, annotator=annotator)
    assignment_skip(assignment_id=assignment.pk, annotator=annotator)
    item.refresh_from_db()
    assert item.open_lease_count == 0


def test_a_ranked_item_cannot_be_skipped():
    item = ItemFactory()
    annotator = UserFactory()
    assignment = assignment_next(annotator=annotator, project=item.project)
    ranking_submit(assignment_id=assignment.pk, annotator=annotator, order=_order_of(assignment))
    with pytest.raises(AssignmentConflict):
        assignment_skip(assignment_id=assignment.pk, annotator=annotator)


def test_expired_leases_return_their_slots_to_the_pool():
    project = ProjectFactory(rankings_per_item=1)
    item = ItemFactory(project=project)
    assignment = assignment_next(annotator=UserFactory(), project=project)
    assert assignments_expire() == 0
    assert assignments_expire(now=timezone.now() + timedelta(hours=1)) == 1
    assignment.refresh_from_db()
    item.refresh_from_db()
    assert assignment.status == Assignment.Status.EXPIRED
    assert item.open_lease_count == 0


def test_next_reclaims_an_abandoned_lease_without_a_scheduler():
    project = ProjectFactory(rankings_per_item=1)
    item = ItemFactory(project=project)
    abandoned = assignment_next(annotator=UserFactory(), project=project)
    _expire(abandoned)
    taken = assignment_next(annotator=UserFactory(), project=project)
    assert taken.item_id == item.pk
    abandoned.refresh_from_db()
    item.refresh_from_db()
    assert abandoned.status == Assignment.Status.EXPIRED
    assert item.open_lease_count == 1


def test_someone_whose_lease_ran_out_gets_the_item_back_in_the_same_order():
    project = ProjectFactory(rankings_per_item=1)
    ItemFactory(project=project, answers=4)
    annotator = UserFactory()
    first = assignment_next(annotator=annotator, project=project)
    _expire(first)
    again = assignment_next(annotator=annotator, project=project)
    assert again.pk == first.pk
    assert again.status == Assignment.Status.OPEN
    assert again.answer_order == first.answer_order
    assert again.expires_at > timezone.now()
    assert Item.objects.get(pk=first.item_id).open_lease_count == 1


def test_an_inactive_project_offers_no_work():
    project = ProjectFactory(is_active=False)
    ItemFactory(project=project)
    assert assignment_next(annotator=UserFactory(), project=project) is None


def test_submit_records_the_ranking_and_frees_the_lease():
    project = ProjectFactory(allow_ties=True, flag_labels=["spam", "harmful"])
    item = ItemFactory(project=project, answers=3)
    annotator = UserFactory()
    assignment = assignment_next(annotator=annotator, project=project)
    a, b, c = assignment.answer_order
    ranking, created = ranking_submit(
        assignment_id=assignment.pk,
        annotator=annotator,
        order=[[b], [a, c]],
        flags={str(c): ["harmful", "spam", "spam"], str(a): []},
        comment="  c is rude  ",
        seconds_spent=12.5,
    )
    assert created is True
    assert ranking.source == Ranking.Source.HUMAN
    assert (ranking.item_id, ranking.annotator_id) == (item.pk, annotator.pk)
    assert ranking.order == [[b], [a, c]]
    assert ranking.flags == {str(c): ["spam", "harmful"]}
    assert ranking.comment == "c is rude"
    assert ranking.seconds_spent == 12.5
    assignment.refresh_from_db()
    item.refresh_from_db()
    assert assignment.status == Assignment.Status.SUBMITTED
    assert assignment.ranking_id == ranking.pk
    assert assignment.finished_at is not None
    assert (item.human_ranking_count, item.open_lease_count) == (1, 0)


def test_a_second_submit_returns_the_first_ranking():
    item = ItemFactory()
    annotator = UserFactory()
    assignment = assignment_next(annotator=annotator, project=item.project)
    order = _order_of(assignment)
    first, created = ranking_submit(assignment_id=assignment.pk, annotator=annotator, order=order)
    again, created_again = ranking_submit(
        assignment_id=assignment.pk, annotator=annotator, order=list(reversed(_order_of(assignment)))
    )
    assert (created, created_again) == (True, False)
    assert again.pk == first.pk
    assert Ranking.objects.count() == 1
    item.refresh_from_db()
    assert item.human_ranking_count == 1


def test_not_rankable_may_come_without_an_order():
    item = ItemFactory()
    annotator = UserFactory()
    assignment = assignment_next(annotator=annotator, project=item.project)
    ranking, _ = ranking_submit(assignment_id=assignment.pk, annotator=annotator, order=[], not_rankable=True)
    assert ranking.not_rankable is True
    assert ranking.order == []


@pytest.mark.parametrize(
    "make_order",
    [
        pytest.param(lambda ids, other: [], id="empty"),
        pytest.param(lambda ids, other: [[ids[0]], [ids[1]]], id="missing-one"),
        pytest.param(lambda ids, other: [[ids[0]], [ids[1]], [ids[2]], [ids[0]]], id="twice"),
        pytest.param(lambda ids, other: [[ids[0]], [ids[1]], [other]], id="foreign-answer"),
        pytest.param(lambda ids, other: [[ids[0]], [], [ids[1]], [ids[2]]], id="empty-group"),
        pytest.param(lambda ids, other: [ids[0], ids[1], ids[2]], id="not-groups"),
        pytest.param(lambda ids, other: "1,2,3", id="not-a-list"),
    ],
)
def test_an_order_must_name_every_answer_exactly_once(make_order):
    item = ItemFactory(answers=3)
    other_answer = ItemFactory(project=item.project).answers.first()
    annotator = UserFactory()
    assignment = assignment_next(annotator=annotator, project=item.project)
    with pytest.raises(RankingInvalid):
        ranking_submit(
            assignment_id=assignment.pk,
            annotator=annotator,
            order=make_order(assignment.answer_order, other_answer.pk),
        )
    assert not Ranking.objects.exists()
    assert Assignment.objects.get(pk=assignment.pk).status == Assignment.Status.OPEN


def test_ties_are_refused_when_the_project_does_not_allow_them():
    item = ItemFactory(project=ProjectFactory(allow_ties=False), answers=3)
    annotator = UserFactory()
    assignment = assignment_next(annotator=annotator, project=item.project)
    a, b, c = assignment.answer_order
    with pytest.raises(RankingInvalid, match="does not allow ties"):
        ranking_submit(assignment_id=assignment.pk, annotator=annotator, order=[[a, b], [c]])


def test_flags_must_use_the_project_labels_and_this_items_answers():
    project = ProjectFactory(flag_labels=["spam"])
    item = ItemFactory(project=project)
    other_answer = ItemFactory(project=project).answers.first()
    annotator = UserFactory()
    assignment = assignment_next(annotator=annotator, project=item.project)
    order = _order_of(assignment)
    first = assignment.answer_order[0]
    for flags in ({str(first): ["harmful"]}, {str(other_answer.pk): ["spam"]}, {"x": ["spam"]}, ["spam"]):
        with pytest.raises(RankingInvalid):
            ranking_submit(assignment_id=assignment.pk, annotator=annotator, order=order, flags=flags)


def test_another_annotators_lease_cannot_be_submitted_or_skipped():
    item = ItemFactory()
    owner = UserFactory()
    assignment = assignment_next(annotator=owner, project=item.project)
    intruder = UserFactory()
    with pytest.raises(AssignmentNotFound):
        ranking_submit(assignment_id=assignment.pk, annotator=intruder, order=_order_of(assignment))
    with pytest.raises(AssignmentNotFound):
        assignment_skip(assignment_id=assignment.pk, annotator=intruder)
    assert not Ranking.objects.exists()


def test_an_expired_lease_is_refused_and_changes_nothing():
    item = ItemFactory()
    annotator = UserFactory()
    assignment = assignment_next(annotator=annotator, project=item.project)
    _expire(assignment)
    with pytest.raises(AssignmentConflict, match="ran out"):
        ranking_submit(assignment_id=assignment.pk, annotator=annotator, order=_order_of(assignment))
    assignments_expire()
    with pytest.raises(AssignmentConflict, match="ran out"):
        ranking_submit(assignment_id=assignment.pk, annotator=annotator, order=_order_of(assignment))
    item.refresh_from_db()
    assert (item.human_ranking_count, item.open_lease_count) == (0, 0)
    assert not Ranking.objects.exists()


def test_negative_time_spent_is_refused():
    item = ItemFactory()
    annotator = UserFactory()
    assignment = assignment_next(annotator=annotator, project=item.project)
    with pytest.raises(RankingInvalid):
        ranking_submit(
            assignment_id=assignment.pk, annotator=annotator, order=_order_of(assignment), seconds_spent=-1
        )


def test_the_work_runs_out_once_every_item_has_its_rankings():
    project = ProjectFactory(rankings_per_item=2)
    ItemFactory.create_batch(3, project=project)
    annotators = UserFactory.create_batch(3)
    submitted = 0
    for annotator in annotators:
        while (assignment := assignment_next(annotator=annotator, project=project)) is not None:
            ranking_submit(assignment_id=assignment.pk, annotator=annotator, order=_order_of(assignment))
            submitted += 1
    assert submitted == 6
    counts = Item.objects.filter(project=project).values_list("human_ranking_count", flat=True)
    assert list(counts) == [2, 2, 2]
    assert not Item.objects.filter(open_lease_count__gt=0).exists()


def test_finding_work_reads_the_need_index_instead_of_scanning_every_item():
    project = ProjectFactory()
    Item.objects.bulk_create(
        Item(project=project, conversation=[{"role": "user", "content": f"q{n}"}]) for n in range(3000)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE annotation_item")
    sql, params = free_item_query(annotator=UserFactory(), project=project)
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(line for (line,) in cursor.fetchall())
    assert "Index Scan using item_project_need_idx on annotation_item" in plan
    assert "Seq Scan on annotation_item" not in plan
    assert "Sort" not in plan


def test_recount_repairs_counters_after_a_ranking_is_deleted_in_the_admin():
    project = ProjectFactory(rankings_per_item=1)
    item, untouched = ItemFactory.create_batch(2, project=project)
    annotator = UserFactory()
    assignment = assignment_next(annotator=annotator, project=project)
    ranking, _ = ranking_submit(assignment_id=assignment.pk, annotator=annotator, order=_order_of(assignment))
    leased = assignment_next(annotator=annotator, project=project)
    assert (assignment.item_id, leased.item_id) == (item.pk, untouched.pk)
    ranking.delete()  # what the admin's delete does: the item still counts the ranking
    Item.objects.filter(pk=untouched.pk).update(open_lease_count=5)
    assert assignment_next(annotator=UserFactory(), project=project) is None

    assert item_counters_recount(project=project) == 2
    assert item_counters_recount(project=project) == 0
    item.refresh_from_db()
    untouched.refresh_from_db()
    assert (item.human_ranking_count, item.open_lease_count) == (0, 0)
    assert (untouched.human_ranking_count, untouched.open_lease_count) == (0, 1)
    assert assignment_next(annotator=UserFactory(), project=project).item_id == item.pk


def test_recount_command_reports_each_project(capsys):
    project = ProjectFactory(name="Recount me")
    item = ItemFactory(project=project)
    Item.objects.filter(pk=item.pk).update(human_ranking_count=2)
    call_command("recount_items", "--project", str(project.pk))
    assert "Recount me: 1 item(s) corrected" in capsys.readouterr().out
    with pytest.raises(CommandError):
        call_command("recount_items", "--project", "987654")
