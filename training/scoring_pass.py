"""The scoring pass: the active model scores every item that still needs rankings, for the `model` work order.

A pass runs on the `training` queue (it loads the model, like a training run). It stores on each item
its answers' rewards, its informativeness (`reward_model.informativeness.pair_entropy`), the version
and the time, then turns the informativeness of all items that need rankings into `model_priority`
(`diverse_order`: most informative first, near-duplicate prompts held back). Annotation reads only
those item fields, never training.

- Queued when a version becomes active (`reward_model_activate`) and by the beat every 5 minutes for
  projects in the `model` order whose items needing rankings include some this version has not scored
  (new items, a project just switched to `model`). One pass at a time per project (a constraint).
- A version change mid-pass: each chunk is written only while the pass's version is still active,
  under that row's lock (activation updates it); otherwise the pass stops as superseded and the new
  version's own pass takes over.
- Priorities are written only where the item still needs rankings and is not disputed, in the same
  UPDATE that checks it, so a ranking that just finished an item (its priority sunk) is never undone.
- Where the project allows more rankings for disputed items (`max_rankings_per_item`), the version also
  scores the complete items that could still take one, and disputes those whose consensus it confidently
  disagrees with (`annotation.work_order.item_dispute_check`, under the item's row lock as a ranking's
  own check runs): a new model can send finished items back to people, once per version, up to the limit.
"""

from __future__ import annotations

import logging
import statistics
import time
from functools import partial
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import F, Prefetch, Q, QuerySet
from django.utils import timezone

from annotation.models import Answer, Item, Project
from annotation.work_order import item_dispute_check

from .models import RewardModel, ScoringPass
from .scoring import _scorer_for
from .selectors import reward_model_active

log = logging.getLogger(__name__)

CHUNK_ITEMS = 256


def _chunks(values: list, size: int) -> list[list]:
    return [values[start : start + size] for start in range(0, len(values), size)]


def _needing_rankings(project: Project) -> QuerySet[Item]:
    return Item.objects.filter(
        project=project, human_ranking_count__lt=F("extra_rankings") + project.rankings_per_item
    )


def _open_to_dispute(project: Project) -> QuerySet[Item]:
    """Complete items (gold aside) that a dispute could still give one more ranking, within the limit."""
    room = (project.max_rankings_per_item or 0) - project.rankings_per_item
    if room <= 0:
        return Item.objects.none()
    return Item.objects.filter(
        project=project,
        gold_order__isnull=True,
        human_ranking_count__gte=F("extra_rankings") + project.rankings_per_item,
        extra_rankings__lt=room,
    )


def _unscored_by(items: QuerySet[Item], reward_model: RewardModel) -> QuerySet[Item]:
    return items.filter(Q(scored_version__isnull=True) | ~Q(scored_version=reward_model.version))


def _disputes_check(*, project: Project, reward_model: RewardModel, item_ids: list[int]) -> int | None:
    """Dispute the complete items this version disagrees with; how many, or None once it is not active."""
    disputed = 0
    for chunk in _chunks(item_ids, CHUNK_ITEMS):
        with transaction.atomic():
            if not _still_active(reward_model.pk):
                return None
            for item_id in chunk:
                # The lock a ranking's own check holds: one of the two sees the other's counts.
                Item.objects.select_for_update().filter(pk=item_id).exists()
                disputed += item_dispute_check(item_id=item_id, project=project)
    return disputed


def scoring_pass_queue(*, project: Project) -> ScoringPass | None:
    """Queue a pass with the project's active model (on commit); None without one or while one is pending."""
    reward_model = reward_model_active(project=project)
    if reward_model is None:
        return None
    try:
        with transaction.atomic():
            scoring_pass = ScoringPass.objects.create(
                project=project, reward_model=reward_model, version=reward_model.version
            )
    except IntegrityError:
        # One is queued or running; a queued one reads the active version when it starts.
        return None
    transaction.on_commit(partial(_enqueue, pass_id=scoring_pass.pk))
    return scoring_pass


def _enqueue(*, pass_id: int) -> None:
    from .tasks import score_items

    try:
        score_items.apply_async(args=[pass_id])
    except Exception as exc:  # the broker is down: not queued; the beat queues a new pass later
        log.error("Could not queue scoring pass %s: %s", pass_id, exc)
        ScoringPass.objects.filter(pk=pass_id, status=ScoringPass.Status.QUEUED).update(
            status=ScoringPass.Status.FAILED, error=f"Could not queue: {exc}", finished_at=timezone.now()
        )


def scoring_passes_queue_due() -> list[int]:
    """Beat: queue a pass per `model`-order project with needy items its active version did not score."""
    queued = []
    for project in Project.objects.filter(is_active=True, work_order=Project.WorkOrder.MODEL):
        reward_model = reward_model_active(project=project)
        if reward_model is None:
            continue
        unscored = _needing_rankings(project).filter(
            Q(scored_version__isnull=True) | ~Q(scored_version=reward_model.version)
        )
        if unscored.exists() and (scoring_pass := scoring_pass_queue(project=project)) is not None:
            queued.append(scoring_pass.pk)
    return queued


def _still_active(reward_model_id: int) -> bool:
    # FOR UPDATE on the version's row: an activation of another version (which updates this row)
    # waits until our chunk is written, or we see it already happened.
    return RewardModel.objects.select_for_update().filter(pk=reward_model_id, is_active=True).exists()


def _finish(scoring_pass: ScoringPass, status: str, **fields: Any) -> ScoringPass:
    for name, value in {"status": status, "finished_at": timezone.now(), **fields}.items():
        setattr(scoring_pass, name, value)
    scoring_pass.save()
    if status == ScoringPass.Status.SUPERSEDED:
        # The activation could not queue its pass while this one ran: queue it now.
        scoring_pass_queue(project=scoring_pass.project)
    return scoring_pass


def _score_items(*, scorer: Any, item_ids: list[int], reward_model: RewardModel) -> bool:
    """Score and store a chunk of items; False when the version stopped being active first."""
    # Imported here: the engine package loads torch, which web processes (that only queue passes) never need.
    from .reward_model.informativeness import pair_entropy

    items = list(
        Item.objects.filter(pk__in=item_ids)
        .only("id", "conversation")
        .prefetch_related(Prefetch("answers", queryset=Answer.objects.only("id", "item_id", "text")))
    )
    rewards = scorer.score_groups(
        [(item.conversation, [answer.text for answer in item.answers.all()]) for item in items]
    )
    now = timezone.now()
    for item, item_rewards in zip(items, rewards, strict=True):
        item.model_rewards = {
            str(answer.pk): round(r, 4) for answer, r in zip(item.answers.all(), item_rewards, strict=True)
        }
        item.informativeness = pair_entropy(item_rewards)
        item.scored_version = reward_model.version
        item.scored_at = now
    with transaction.atomic():
        if not _still_active(reward_model.pk):
            return False
        Item.objects.bulk_update(items, ["model_rewards", "informativeness", "scored_version", "scored_at"])
    return True


def _write_priorities(*, project: Project, reward_model: RewardModel) -> dict[str, float]:
    """model_priority of every scored item needing rankings, from informativeness and diversity."""
    import numpy as np

    from .reward_model.informativeness import diverse_order, priorities, prompt_vector

    rows = list(
        _needing_rankings(project)
        .filter(scored_version=reward_model.version)
        .values_list("id", "informativeness", "conversation")
    )
    if not rows:
        return {}
    scores = [informativeness or 0.0 for _, informativeness, _ in rows]
    prompts = [Item(conversation=conversation).prompt for *_, conversation in rows]
    vectors = np.stack([prompt_vector(text) for text in prompts])
    values = priorities(diverse_order(scores, vectors), len(rows))
    with transaction.atomic():
        if not _still_active(reward_model.pk):
            return {}
        with connection.cursor() as cursor:
            for chunk in _chunks(list(range(len(rows))), 5000):
                cursor.execute(
                    f"""
                    UPDATE {Item._meta.db_table} AS item SET model_priority = new.priority
                      FROM unnest(%s::bigint[], %s::float8[]) AS new(id, priority)
                     WHERE item.id = new.id AND item.extra_rankings = 0
                       AND item.human_ranking_count < %s
                    """,
                    [[rows[i][0] for i in chunk], [values[i] for i in chunk], project.rankings_per_item],
                )
    quartiles = statistics.quantiles(scores, n=4) if len(scores) > 1 else [scores[0]] * 3
    return {
        "min": min(scores),
        "q1": quartiles[0],
        "median": quartiles[1],
        "q3": quartiles[2],
        "max": max(scores),
    }


def scoring_pass_run(*, pass_id: int) -> ScoringPass | None:
    """Run one queued pass in this worker; None when it was not queued (a redelivered message)."""
    claimed = ScoringPass.objects.filter(pk=pass_id, status=ScoringPass.Status.QUEUED).update(
        status=ScoringPass.Status.RUNNING
    )
    if not claimed:
        return None
    scoring_pass = ScoringPass.objects.select_related("project").get(pk=pass_id)
    project = scoring_pass.project
    reward_model = reward_model_active(project=project)
    if reward_model is None:
        return _finish(scoring_pass, ScoringPass.Status.FAILED, error="The project has no active model.")
    scoring_pass.reward_model, scoring_pass.version = reward_model, reward_model.version
    started = time.perf_counter()
    try:
        scorer = _scorer_for(reward_model)
        needing = _needing_rankings(project)
        # A version that scored this project before scores again only what it has not seen.
        item_ids = list(_unscored_by(needing, reward_model).order_by("id").values_list("id", flat=True))
        complete_ids = list(
            _unscored_by(_open_to_dispute(project), reward_model).order_by("id").values_list("id", flat=True)
        )
        scored = 0
        for chunk in _chunks(item_ids + complete_ids, CHUNK_ITEMS):
            if not _score_items(scorer=scorer, item_ids=list(chunk), reward_model=reward_model):
                return _finish(scoring_pass, ScoringPass.Status.SUPERSEDED, items_scored=scored)
            scored += len(chunk)
        spread = _write_priorities(project=project, reward_model=reward_model)
        disputed = _disputes_check(project=project, reward_model=reward_model, item_ids=complete_ids)
        if disputed is None:
            return _finish(scoring_pass, ScoringPass.Status.SUPERSEDED, items_scored=scored)
    except Exception as exc:
        log.exception("Scoring pass %s failed", pass_id)
        return _finish(scoring_pass, ScoringPass.Status.FAILED, error=str(exc)[:2000])
    active = reward_model_active(project=project)
    if active is None or active.pk != reward_model.pk:
        return _finish(scoring_pass, ScoringPass.Status.SUPERSEDED, items_scored=scored)
    return _finish(
        scoring_pass,
        ScoringPass.Status.SUCCEEDED,
        items_needing=needing.count(),
        items_scored=scored,
        items_disputed=disputed,
        seconds=round(time.perf_counter() - started, 3),
        informativeness=spread,
    )


def scoring_pass_latest(*, project: Project) -> ScoringPass | None:
    """The project's most recent finished pass (succeeded or superseded), for staff."""
    finished = (ScoringPass.Status.SUCCEEDED, ScoringPass.Status.SUPERSEDED)
    return (
        ScoringPass.objects.filter(project=project, status__in=finished)
        .select_related("reward_model")
        .first()
    )


def accuracy_by_rankings(*, project: Project) -> list[dict[str, Any]]:
    """Held-out accuracy of each version against the rankings it was trained on, oldest version first."""
    versions = RewardModel.objects.filter(project=project).select_related("training_run").order_by("version")
    return [
        {
            "version": version.version,
            "rankings": version.training_run.train_row_count if version.training_run else None,
            "accuracy": version.pairwise_accuracy,
            "eval_pairs": version.eval_pairs,
            "is_active": version.is_active,
        }
        for version in versions
    ]
