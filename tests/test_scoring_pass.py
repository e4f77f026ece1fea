"""The scoring pass: the active model scores every item needing rankings; the `model` order follows it."""

import pytest

from annotation.assignment import assignment_next, ranking_submit
from annotation.models import Item
from annotation.work_order import DISPUTED_PRIORITY, SATISFIED_PRIORITY
from tests.factories import ItemFactory, ProjectFactory, RankingFactory, UserFactory
from tests.training_setup import learnable_items_create, tiny_base_model_save
from training import scoring_pass as service
from training.models import RewardModel, ScoringPass
from training.registry import reward_model_activate
from training.scoring_pass import scoring_pass_queue, scoring_pass_run, scoring_passes_queue_due

pytestmark = pytest.mark.django_db


@pytest.fixture
def versions(tmp_path):
    """A `model`-order project with an active version 1 (a tiny real model) and an inactive version 2."""
    project = ProjectFactory(work_order="model", rankings_per_item=1)
    first = RewardModel.objects.create(
        project=project, version=1, artifact_path=str(tiny_base_model_save(tmp_path / "v1")), is_active=True
    )
    second = RewardModel.objects.create(
        project=project, version=2, artifact_path=str(tiny_base_model_save(tmp_path / "v2"))
    )
    return project, first, second


def test_a_pass_scores_every_item_needing_rankings_with_the_active_version(versions):
    project, first, _ = versions
    items = learnable_items_create(project=project, count=12)
    done = items[0]
    annotator = UserFactory()
    lease = assignment_next(annotator=annotator, project=project)
    ranking_submit(assignment_id=lease.pk, annotator=annotator, order=[[a] for a in lease.answer_order])

    scoring_pass = scoring_pass_run(pass_id=scoring_pass_queue(project=project).pk)

    assert scoring_pass.status == ScoringPass.Status.SUCCEEDED
    assert (scoring_pass.version, scoring_pass.items_needing, scoring_pass.items_scored) == (1, 11, 11)
    assert set(scoring_pass.informativeness) == {"min", "q1", "median", "q3", "max"}
    for item in Item.objects.filter(project=project).exclude(pk=done.pk):
        assert item.scored_version == 1 and item.scored_at is not None
        assert set(item.model_rewards) == {str(a) for a in item.answers.values_list("pk", flat=True)}
        assert 0 <= item.informativeness <= 1 and 0 < item.model_priority < 1
    done.refresh_from_db()
    assert done.scored_version is None and done.model_priority == SATISFIED_PRIORITY
    # The `model` order now hands out the item the pass put first.
    best = Item.objects.filter(project=project).order_by("-model_priority", "id").first()
    assert assignment_next(annotator=UserFactory(), project=project).item_id == best.pk


def test_a_version_activated_mid_pass_supersedes_it_and_its_own_pass_scores_everything(versions, monkeypatch):
    project, first, second = versions
    ItemFactory.create_batch(6, project=project)
    monkeypatch.setattr(service, "CHUNK_ITEMS", 2)
    real_scorer_for = service._scorer_for
    calls = []

    def scorer_that_sees_an_activation(reward_model):
        scorer = real_scorer_for(reward_model)
        real_score_groups = scorer.score_groups

        def score_groups(groups):
            calls.append(reward_model.version)
            if reward_model.version == 1 and len(calls) == 2:
                reward_model_activate(reward_model=second)  # staff activate v2 while chunk 2 is scored
            return real_score_groups(groups)

        monkeypatch.setattr(scorer, "score_groups", score_groups)
        return scorer

    monkeypatch.setattr(service, "_scorer_for", scorer_that_sees_an_activation)
    interrupted = scoring_pass_run(pass_id=scoring_pass_queue(project=project).pk)

    assert (interrupted.status, interrupted.items_scored) == (ScoringPass.Status.SUPERSEDED, 2)
    # Nothing of version 1 was written after version 2 became active.
    assert Item.objects.filter(project=project, scored_version=1).count() == 2
    follow_up = ScoringPass.objects.get(project=project, status=ScoringPass.Status.QUEUED)
    assert follow_up.version == 2
    finished = scoring_pass_run(pass_id=follow_up.pk)
    assert (finished.status, finished.version, finished.items_scored) == (ScoringPass.Status.SUCCEEDED, 2, 6)
    assert set(Item.objects.filter(project=project).values_list("scored_version", flat=True)) == {2}


def test_the_beat_queues_a_pass_only_where_items_are_unscored_and_one_at_a_time(versions):
    project, first, _ = versions
    ProjectFactory(work_order="coverage")  # not in the model order: never scored by the beat
    ItemFactory.create_batch(3, project=project)

    queued = scoring_passes_queue_due()
    assert len(queued) == 1 and scoring_passes_queue_due() == []  # one pass at a time per project
    scoring_pass_run(pass_id=queued[0])
    assert scoring_passes_queue_due() == []
    new = ItemFactory(project=project)  # a new item arrives: neutral until the next pass scores it
    assert new.model_priority == 0.5
    again = scoring_passes_queue_due()
    assert scoring_pass_run(pass_id=again[0]).items_scored == 1  # only the one this version has not seen


def test_activating_a_version_queues_a_pass_for_a_model_order_project(versions):
    project, first, second = versions
    reward_model_activate(reward_model=second)
    assert ScoringPass.objects.get(project=project).version == 2
    coverage = ProjectFactory()
    other = RewardModel.objects.create(project=coverage, version=1, artifact_path=first.artifact_path)
    reward_model_activate(reward_model=other)
    assert not ScoringPass.objects.filter(project=coverage).exists()


def test_a_redelivered_pass_message_runs_nothing(versions):
    project, *_ = versions
    scoring_pass = scoring_pass_queue(project=project)
    assert scoring_pass_run(pass_id=scoring_pass.pk) is not None
    assert scoring_pass_run(pass_id=scoring_pass.pk) is None


def test_a_new_version_disputes_complete_items_whose_consensus_it_confidently_rejects(versions, monkeypatch):
    project, first, _ = versions
    project.rankings_per_item, project.max_rankings_per_item = 2, 3
    project.save()
    people = [UserFactory(), UserFactory()]

    def complete(*texts, extra_rankings=0, gold=False):
        """An item whose two rankings agree: its answers in the order given, best first."""
        item = ItemFactory(project=project, answers=list(texts))
        answers = list(item.answers.order_by("position").values_list("pk", flat=True))
        for person in people:
            RankingFactory(item=item, annotator=person, order=[[a] for a in answers])
        Item.objects.filter(pk=item.pk).update(
            human_ranking_count=2 + extra_rankings,
            extra_rankings=extra_rankings,
            model_priority=SATISFIED_PRIORITY,
            gold_order=[[a] for a in answers] if gold else None,
        )
        return item

    rejected = complete("people's best", "middle", "the model's best")
    agreed = complete("the model's best", "middle", "people's best")
    at_the_limit = complete("people's best", "the model's best", extra_rankings=1)
    golden = complete("people's best", "the model's best", gold=True)
    waiting = ItemFactory(project=project, answers=["a", "b"])
    real_scorer_for = service._scorer_for

    def scorer_that_likes_one_answer(reward_model):
        scorer = real_scorer_for(reward_model)
        monkeypatch.setattr(
            scorer,
            "score_groups",
            lambda groups: [
                [5.0 if text == "the model's best" else 0.0 for text in texts] for _, texts in groups
            ],
        )
        return scorer

    monkeypatch.setattr(service, "_scorer_for", scorer_that_likes_one_answer)

    scoring_pass = scoring_pass_run(pass_id=scoring_pass_queue(project=project).pk)

    assert scoring_pass.status == ScoringPass.Status.SUCCEEDED
    # Scored: the waiting item and the two complete items that could still take a ranking, not the
    # others; needing rankings once it ended: the waiting item and the one it disputed.
    assert (scoring_pass.items_needing, scoring_pass.items_scored, scoring_pass.items_disputed) == (2, 3, 1)
    scored = set(Item.objects.filter(project=project, scored_version=1).values_list("pk", flat=True))
    assert scored == {waiting.pk, rejected.pk, agreed.pk}
    for item in (rejected, agreed, at_the_limit, golden):
        item.refresh_from_db()
    assert (rejected.extra_rankings, rejected.model_priority) == (1, DISPUTED_PRIORITY)
    assert "the model prefers answer" in rejected.disputed_reason
    assert (agreed.extra_rankings, agreed.disputed_reason, agreed.model_priority) == (
        0,
        "",
        SATISFIED_PRIORITY,
    )
    assert (at_the_limit.extra_rankings, golden.extra_rankings) == (1, 0)
    # The disputed item is what the `model` order hands a third person first.
    assert assignment_next(annotator=UserFactory(), project=project).item_id == rejected.pk
    # The same version does not dispute it again: its one more ranking is all it asks for.
    again = scoring_pass_run(pass_id=scoring_pass_queue(project=project).pk)
    assert (again.items_scored, again.items_disputed) == (0, 0)
