"""Gold items mixed into the work at the project's rate, per-annotator figures, and excluding an annotator."""

import random

import pytest

from annotation import gold
from annotation.annotator_quality import annotator_exclude, annotator_figures, annotator_include
from annotation.assignment import assignment_next, assignment_skip, ranking_submit
from annotation.exports import ExportFilters, export_rows, export_source_fingerprint
from annotation.models import Ranking
from tests.factories import ItemFactory, ProjectFactory, RankingFactory, UserFactory
from tests.quality_setup import careful_and_careless
from training import execution

pytestmark = pytest.mark.django_db


def _gold(item, best_first=True):
    answers = list(item.answers.order_by("position").values_list("pk", flat=True))
    gold.gold_item_set(item=item, order=[[a] for a in (answers if best_first else answers[::-1])])
    return answers


def test_gold_items_come_at_the_projects_rate_over_many_leases(monkeypatch):
    monkeypatch.setattr(gold, "chance", random.Random(7))
    project = ProjectFactory(rankings_per_item=1, gold_rate=0.1)
    ordinary = [ItemFactory(project=project, answers=["a", "b"]) for _ in range(300)]
    gold_items = [ItemFactory(project=project, answers=["a", "b"]) for _ in range(60)]
    for item in gold_items:
        _gold(item)
    person = UserFactory()

    for _ in range(300):
        lease = assignment_next(annotator=person, project=project)
        ranking_submit(assignment_id=lease.pk, annotator=person, order=[[a] for a in lease.answer_order])

    ranked_gold = Ranking.objects.filter(annotator=person, item__in=gold_items).count()
    # 10% of 300 is 30; a binomial's spread is about 5, and the draws are seeded: within 2.5 spreads.
    # (A rate half as high again, 15%, would give about 45.)
    assert 17 <= ranked_gold <= 43
    assert Ranking.objects.filter(annotator=person, item__in=ordinary).count() == 300 - ranked_gold


def test_gold_items_are_offered_to_everyone_beyond_rankings_per_item_and_never_by_the_work_order(monkeypatch):
    project = ProjectFactory(rankings_per_item=1, gold_rate=0.0)
    item = ItemFactory(project=project, answers=["a", "b"])
    _gold(item)
    assert assignment_next(annotator=UserFactory(), project=project) is None  # gold only by its draw

    project.gold_rate = 1.0
    for _ in range(3):
        person = UserFactory()
        lease = assignment_next(annotator=person, project=project)
        assert lease.item_id == item.pk
        ranking_submit(assignment_id=lease.pk, annotator=person, order=[[a] for a in lease.answer_order])


def test_gold_items_stay_out_of_exports_and_training(media):
    project = ProjectFactory()
    kept, golden = ItemFactory(project=project), ItemFactory(project=project)
    RankingFactory(item=kept)
    RankingFactory(item=golden)
    before = export_source_fingerprint(project=project)
    _gold(golden)

    rows = list(export_rows(project=project, format="rankings", filters=ExportFilters()))
    snapshot = execution._rankings_snapshot(project=project)

    assert {r["item_id"] for r in rows} == {kept.pk}
    assert snapshot.item_count == 1
    assert export_source_fingerprint(project=project) != before


def test_per_annotator_figures_on_a_worked_example(monkeypatch):
    monkeypatch.setattr(gold, "chance", random.Random(1))
    project = ProjectFactory(rankings_per_item=3, gold_rate=0.0)
    careful, careless, (other1, other2) = careful_and_careless(project=project)
    # careless skipped one lease of a further item, which careful took 300 s over (a median, not a mean:
    # careful's seconds are 30, 30, 30, 40, 40, 40 and 300, whose mean is 73)
    extra = ItemFactory(project=project, answers=["a", "b"])
    RankingFactory(item=extra, annotator=careful, seconds_spent=300, order_changed=True)
    project.rankings_per_item = 4
    project.save()
    lease = assignment_next(annotator=careless, project=project)
    assert lease.item_id == extra.pk
    assignment_skip(assignment_id=lease.pk, annotator=careless)
    # other1 and other2 ranked one more item in opposite orders: against the others (not themselves
    # among them) each is reversed there.
    split = ItemFactory(project=project, answers=["a", "b", "c"])
    answers = list(split.answers.order_by("position").values_list("pk", flat=True))
    for person, order in ((other1, answers), (other2, answers[::-1])):
        RankingFactory(
            item=split, annotator=person, order=[[a] for a in order], seconds_spent=35, order_changed=True
        )

    figures = {f.username: f for f in annotator_figures(project=project)}

    good, bad = figures["careful"], figures["careless"]
    assert (good.rankings, good.gold_items, good.gold_tau, good.shared_items) == (7, 3, 1.0, 3)
    assert good.consensus_tau == 1.0  # the consensus of the two others and careless is the majority's order
    assert good.median_seconds == 40 and good.untouched_share == 0.0 and not good.marked
    for other in (figures["other1"], figures["other2"]):
        assert (other.shared_items, other.consensus_tau) == (4, 0.5)  # (1 + 1 + 1 - 1) / 4
        assert not other.marked
    assert (bad.gold_tau, bad.consensus_tau) == (-1.0, -1.0)
    assert bad.median_seconds == 1.5 and bad.untouched_share == 1.0
    assert bad.skip_rate == pytest.approx(1 / 7) and good.skip_rate == 0.0
    assert bad.marked and any("gold" in reason for reason in bad.reasons)


def test_figures_over_fewer_than_three_items_mark_no_one():
    project = ProjectFactory(gold_rate=0.0)
    careful, careless, _ = careful_and_careless(project=project, gold_items=2, shared_items=0)
    two = {f.username: f for f in annotator_figures(project=project)}["careless"]
    # A third gold item, ranked as the first two were.
    third = ItemFactory(project=project, answers=["a", "b", "c"])
    answers = _gold(third)
    as_before = [(careful, answers, 30, True), (careless, answers[::-1], 1, False)]
    for person, order, seconds, changed in as_before:
        RankingFactory(
            item=third,
            annotator=person,
            order=[[a] for a in order],
            seconds_spent=seconds,
            order_changed=changed,
        )
    three = {f.username: f for f in annotator_figures(project=project)}["careless"]

    assert (two.gold_items, two.gold_tau, two.untouched_share, two.median_seconds) == (2, -1.0, 1.0, 1)
    assert not two.marked
    assert three.marked and len(three.reasons) == 3  # gold, untouched and speed: nobody else shares items


def test_excluding_an_annotator_leaves_their_rankings_out_until_it_is_taken_back(media):
    project = ProjectFactory()
    item = ItemFactory(project=project)
    kept, dropped = RankingFactory(item=item), RankingFactory(item=item)
    # The same person in another project, where nobody excluded them.
    elsewhere = ProjectFactory()
    RankingFactory(item=ItemFactory(project=elsewhere), annotator=dropped.annotator)
    first = execution._rankings_snapshot(project=project)

    annotator_exclude(project=project, annotator=dropped.annotator, by=None)
    annotator_exclude(project=project, annotator=dropped.annotator, by=None)  # twice is harmless
    while_excluded = execution._rankings_snapshot(project=project)
    rows = list(export_rows(project=project, format="rankings", filters=ExportFilters()))
    rows_elsewhere = list(export_rows(project=elsewhere, format="rankings", filters=ExportFilters()))
    annotator_include(project=project, annotator=dropped.annotator)
    after = execution._rankings_snapshot(project=project)

    assert first.row_count == 2
    assert len(rows) == 1 and while_excluded.row_count == 1 and while_excluded.pk != first.pk
    assert len(rows_elsewhere) == 1  # an exclusion is the project's own
    assert after.row_count == 2
    assert next(f for f in annotator_figures(project=project) if f.annotator_id == kept.annotator_id)


def test_staff_exclude_and_include_from_the_annotators_page(client, staff):
    project = ProjectFactory()
    ranking = RankingFactory(item=ItemFactory(project=project))
    client.force_login(staff)
    url = f"/projects/{project.pk}/annotators/{ranking.annotator_id}/exclusion/"

    page = client.get(f"/projects/{project.pk}/annotators/").content.decode()
    client.post(url)
    excluded = client.get(f"/projects/{project.pk}/annotators/").content.decode()
    client.post(url, {"include": "1"})

    assert ranking.annotator.username in page and "Exclude" in page
    assert "excluded" in excluded and "Include again" in excluded
    assert not project.exclusions.exists()
