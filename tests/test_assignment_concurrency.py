"""Many annotators at once, each thread on its own PostgreSQL connection, against the real row locks."""

import random
import threading
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

import factory
import pytest
from django.db import connection, transaction
from django.utils import timezone

from annotation import item_html
from annotation.assignment import assignment_next, assignment_skip, assignments_expire, ranking_submit
from annotation.models import Assignment, Item, Ranking
from tests.factories import ItemFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

# In the `model` work order items come in model_priority order, not id order: scatter it.
SCATTERED = factory.LazyFunction(random.random)


@pytest.fixture(params=["coverage", "model"])
def work_order(request) -> str:
    """Every rule of assignment holds in each work order that reads an index."""
    return request.param


def run_at_once(work: Callable, arguments: list) -> list:
    """Run work(argument) in one thread per argument, all released together; return results in order."""
    barrier = threading.Barrier(len(arguments))
    results: list = [None] * len(arguments)
    errors: list[BaseException] = []

    def run(index: int, argument) -> None:
        try:
            barrier.wait()
            results[index] = work(argument)
        except BaseException as exc:  # surfaced in the test below, not lost in the thread
            errors.append(exc)
        finally:
            # Each thread opened its own connection; closing it lets the test database be dropped.
            connection.close()

    threads = [threading.Thread(target=run, args=(i, arg)) for i, arg in enumerate(arguments)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a worker thread hung"
    if errors:
        raise errors[0]
    return results


def assert_counters_match_the_rows(project) -> None:
    for item in Item.objects.filter(project=project):
        rankings = Ranking.objects.filter(item=item, source=Ranking.Source.HUMAN).count()
        leases = Assignment.objects.filter(item=item, status=Assignment.Status.OPEN).count()
        assert (item.human_ranking_count, item.open_lease_count) == (rankings, leases), item


def test_many_annotators_ranking_at_once_fill_every_slot_exactly_once(work_order):
    project = ProjectFactory(work_order=work_order, rankings_per_item=3)
    ItemFactory.create_batch(12, project=project, model_priority=SCATTERED, answers=4)
    annotators = UserFactory.create_batch(16)

    def rank_until_done(annotator) -> list[int]:
        items_seen = []
        while (assignment := assignment_next(annotator=annotator, project=project)) is not None:
            items_seen.append(assignment.item_id)
            order = [[answer_id] for answer_id in reversed(assignment.answer_order)]
            ranking_submit(assignment_id=assignment.pk, annotator=annotator, order=order, seconds_spent=1)
        return items_seen

    per_annotator = run_at_once(rank_until_done, annotators)

    for items_seen in per_annotator:
        assert len(items_seen) == len(set(items_seen)), "an annotator got the same item twice"
    per_item = Counter(item_id for items_seen in per_annotator for item_id in items_seen)
    assert sorted(per_item.values()) == [3] * 12
    assert Ranking.objects.count() == 36
    assert not Item.objects.exclude(human_ranking_count=3).exists()
    assert not Assignment.objects.filter(status=Assignment.Status.OPEN).exists()
    assert_counters_match_the_rows(project)


def test_simultaneous_requests_never_hand_out_more_leases_than_free_slots(work_order):
    project = ProjectFactory(work_order=work_order, rankings_per_item=2)
    ItemFactory.create_batch(4, project=project, model_priority=SCATTERED)
    annotators = UserFactory.create_batch(16)

    leases = run_at_once(lambda annotator: assignment_next(annotator=annotator, project=project), annotators)

    granted = [lease for lease in leases if lease is not None]
    assert len(granted) == 8
    assert sorted(Counter(lease.item_id for lease in granted).values()) == [2, 2, 2, 2]
    assert len({lease.annotator_id for lease in granted}) == 8
    assert_counters_match_the_rows(project)


def test_one_annotator_asking_from_several_tabs_at_once_gets_one_lease(work_order):
    project = ProjectFactory(work_order=work_order, rankings_per_item=3)
    ItemFactory.create_batch(5, project=project, model_priority=SCATTERED)
    annotator = UserFactory()

    leases = run_at_once(lambda _: assignment_next(annotator=annotator, project=project), list(range(8)))

    assert len({lease.pk for lease in leases}) == 1
    assert Assignment.objects.filter(annotator=annotator).count() == 1
    assert_counters_match_the_rows(project)


def test_a_double_submit_racing_itself_records_one_ranking(work_order):
    project = ProjectFactory(work_order=work_order)
    ItemFactory(project=project, model_priority=SCATTERED, answers=3)
    annotator = UserFactory()
    assignment = assignment_next(annotator=annotator, project=project)
    order = [[answer_id] for answer_id in assignment.answer_order]

    def submit(_):
        return ranking_submit(assignment_id=assignment.pk, annotator=annotator, order=order)

    results = run_at_once(submit, list(range(6)))

    assert sorted(created for _, created in results) == [False] * 5 + [True]
    assert len({ranking.pk for ranking, _ in results}) == 1
    assert Ranking.objects.count() == 1
    assert_counters_match_the_rows(project)


def test_a_mixed_crowd_submitting_skipping_and_abandoning_keeps_every_count_true(work_order):
    project = ProjectFactory(work_order=work_order, rankings_per_item=3)
    ItemFactory.create_batch(10, project=project, model_priority=SCATTERED, answers=3)
    annotators = UserFactory.create_batch(16)

    def work(annotator) -> None:
        choices = random.Random(annotator.pk)
        for _ in range(30):
            assignment = assignment_next(annotator=annotator, project=project)
            if assignment is None:
                return
            roll = choices.random()
            if roll < 0.6:
                order = [[answer_id] for answer_id in assignment.answer_order]
                ranking_submit(assignment_id=assignment.pk, annotator=annotator, order=order)
            elif roll < 0.8:
                assignment_skip(assignment_id=assignment.pk, annotator=annotator)
            else:
                # Walks away: the lease runs out, and the next call (theirs or anyone's) sweeps it.
                past = timezone.now() - timedelta(seconds=1)
                Assignment.objects.filter(pk=assignment.pk).update(expires_at=past)

    run_at_once(work, annotators)

    assignments_expire(now=timezone.now() + timedelta(days=1))
    assert_counters_match_the_rows(project)
    assert not Item.objects.filter(human_ranking_count__gt=3).exists()
    assert not Assignment.objects.filter(status=Assignment.Status.OPEN).exists()
    assert Ranking.objects.count() == Assignment.objects.filter(status=Assignment.Status.SUBMITTED).count()


def test_an_items_markdown_is_rendered_with_no_lock_held_on_the_item(monkeypatch, work_order):
    # A render that takes long (a huge or pathological answer) once held the item's row lock all along,
    # and every other request for that item queued behind it until gunicorn killed the worker.
    project = ProjectFactory(work_order=work_order, rankings_per_item=2)
    item = ItemFactory(project=project, model_priority=SCATTERED, answers=["*slow* to render", "fast"])
    first, second = UserFactory.create_batch(2)
    rendering, go_on = threading.Event(), threading.Event()
    render = item_html.render_markdown

    def render_slowly(text: str) -> str:
        if not rendering.is_set():
            rendering.set()
            assert go_on.wait(timeout=60)
        return render(text)

    monkeypatch.setattr(item_html, "render_markdown", render_slowly)
    leased: list = []

    def lease_for_first() -> None:
        try:
            leased.append(assignment_next(annotator=first, project=project))
        finally:
            connection.close()  # its own connection, opened in this thread

    thread = threading.Thread(target=lease_for_first)
    thread.start()
    try:
        assert rendering.wait(timeout=60), "the first lease never started rendering"
        with transaction.atomic(), connection.cursor() as cursor:
            # NOWAIT: fails at once with "could not obtain lock" if the rendering request holds the row.
            cursor.execute(f"SELECT id FROM {Item._meta.db_table} WHERE id = %s FOR UPDATE NOWAIT", [item.pk])
            assert cursor.fetchone() == (item.pk,)
        # Meanwhile the item's other slot goes to someone else straight away.
        assert assignment_next(annotator=second, project=project).item_id == item.pk
    finally:
        go_on.set()
        thread.join(timeout=60)
    assert [lease.item_id for lease in leased] == [item.pk]
    item.refresh_from_db()
    assert item.open_lease_count == 2
    assert sorted(html for _, html in item.rendered["answers"].values()) == [
        "<p><em>slow</em> to render</p>",
        "<p>fast</p>",
    ]
