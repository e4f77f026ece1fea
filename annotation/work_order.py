"""A project's work order (which free item comes next), and disputed items that come back for more rankings.

- `coverage`: fewest rankings first, then id (`item_project_need_idx`).
- `random`: fewest rankings first, then at random; it sorts the free items of the lowest tier, so it is
  a baseline for comparison, not meant for very large projects.
- `model`: the most informative item first by `Item.model_priority`, which training's scoring pass
  writes (`training.scoring_pass`); one range scan of `item_project_model_idx` that stops at the first
  free row. Items that need no more rankings are given `SATISFIED_PRIORITY` when their last ranking
  arrives, so they sit at the end of the index and the scan never walks over them.

An item is disputed when its annotators split (mean Kendall τ-b among their rankings below
`DISPUTE_TAU_BELOW`) or when the model that scored it confidently prefers another answer than the
consensus; it then wants one more ranking, up to the project's `max_rankings_per_item`.
"""

from __future__ import annotations

import math
from itertools import combinations

from django.db.models import Case, F, Value, When

from preferences.consensus import item_consensus
from preferences.rankings import kendall_tau_b

from .models import Item, Project, Ranking

SATISFIED_PRIORITY = -1.0
# What items get before a scoring pass has scored them (the field's default).
NEUTRAL_PRIORITY = 0.5
# A disputed item jumps ahead of every scored item in the `model` order.
DISPUTED_PRIORITY = 1.0
DISPUTE_TAU_BELOW = 0.2
# The model "confidently disagrees" when it gives the consensus' best answer this little chance
# (Bradley–Terry) of beating the answer the model likes best.
DISPUTE_MODEL_PROBABILITY_BELOW = 0.1

_ORDER_BY = {
    Project.WorkOrder.COVERAGE: "candidate.human_ranking_count, candidate.id",
    Project.WorkOrder.RANDOM: "candidate.human_ranking_count, random()",
    Project.WorkOrder.MODEL: "candidate.model_priority DESC, candidate.id",
}


def order_by_sql(*, project: Project) -> str:
    """The ORDER BY of the free-item query for the project's work order (an unknown one falls back)."""
    return _ORDER_BY.get(project.work_order, _ORDER_BY[Project.WorkOrder.COVERAGE])


def priority_after_ranking(*, project: Project) -> Case:
    """model_priority once one more ranking is counted: sunk when the item then needs no more."""
    wanted = F("extra_rankings") + project.rankings_per_item
    return Case(
        When(human_ranking_count__gte=wanted - 1, then=Value(SATISFIED_PRIORITY)),
        default=F("model_priority"),
    )


def _mean_tau(orders: list[list[list[int]]]) -> float | None:
    taus = [t for a, b in combinations(orders, 2) if (t := kendall_tau_b(a, b)) is not None]
    return sum(taus) / len(taus) if taus else None


def dispute_reason(*, orders: list[list[list[int]]], model_rewards: dict[str, float]) -> str:
    """Why an item's rankings are disputed, or "" when they are not (from its rankings and model rewards)."""
    orders = [order for order in orders if order]
    if len(orders) >= 2:
        tau = _mean_tau(orders)
        if tau is not None and tau < DISPUTE_TAU_BELOW:
            return f"annotators split (mean Kendall τ {tau:.2f})"
    if orders and model_rewards:
        consensus = item_consensus(orders)
        best = consensus.ranking[0] if consensus.ranking else []
        rewards = {int(k): float(v) for k, v in model_rewards.items()}
        if len(best) == 1 and best[0] in rewards and len(rewards) >= 2:
            model_best = max(rewards, key=rewards.get)
            margin = rewards[best[0]] - rewards[model_best]
            probability = 1 / (1 + math.exp(-margin)) if margin > -50 else 0.0
            if model_best != best[0] and probability < DISPUTE_MODEL_PROBABILITY_BELOW:
                return f"the model prefers answer {model_best} (P(consensus best) {probability:.2f})"
    return ""


def item_dispute_check(*, item_id: int, project: Project) -> bool:
    """Ask for one more ranking of a complete item if it is disputed and the project's limit allows.

    Called by ranking_submit under the item's row lock, after the counters changed.
    """
    limit = project.max_rankings_per_item
    if not limit:
        return False
    item = Item.objects.only("human_ranking_count", "extra_rankings", "model_rewards").get(pk=item_id)
    wanted = project.rankings_per_item + item.extra_rankings
    if item.human_ranking_count < wanted or wanted >= limit:
        return False
    orders = list(
        Ranking.objects.filter(item_id=item_id, source=Ranking.Source.HUMAN, not_rankable=False).values_list(
            "order", flat=True
        )
    )
    reason = dispute_reason(orders=orders, model_rewards=item.model_rewards or {})
    if not reason:
        return False
    Item.objects.filter(pk=item_id).update(
        extra_rankings=F("extra_rankings") + 1, model_priority=DISPUTED_PRIORITY, disputed_reason=reason[:200]
    )
    return True


def disputed_items_list(*, project: Project, limit: int = 100) -> list[dict]:
    """Disputed items, newest dispute first: answers with the model's rewards, and every human ranking."""
    items = (
        Item.objects.filter(project=project)
        .exclude(disputed_reason="")
        .prefetch_related("answers")
        .order_by("-extra_rankings", "-id")[:limit]
    )
    rankings = Ranking.objects.filter(item__in=[item.pk for item in items], source=Ranking.Source.HUMAN)
    by_item: dict[int, list[Ranking]] = {}
    for ranking in rankings.select_related("annotator").order_by("created_at", "id"):
        by_item.setdefault(ranking.item_id, []).append(ranking)
    listed = []
    for item in items:
        answers = list(item.answers.all())
        places = {answer.pk: n for n, answer in enumerate(answers, start=1)}
        rewards = item.model_rewards or {}
        listed.append(
            {
                "item": item,
                "answers": [(places[a.pk], a, rewards.get(str(a.pk))) for a in answers],
                "rankings": [
                    {
                        "annotator": ranking.annotator.get_username() if ranking.annotator else "",
                        "not_rankable": ranking.not_rankable,
                        # Answers by their number on this page, best group first, ties joined by "=".
                        "order": " > ".join(
                            " = ".join(str(places.get(a, "?")) for a in group) for group in ranking.order
                        ),
                    }
                    for ranking in by_item.get(item.pk, [])
                ],
            }
        )
    return listed


def scan_bounds_sql(*, project: Project) -> tuple[str, list]:
    """Conditions the free-item scan can answer from its index, so that a project with no work left is
    one short probe instead of a walk over every finished item: no item wants more than the project's
    largest number of rankings, and in the `model` order finished items (sunk priority) are past the end.
    """
    bound = max(project.rankings_per_item, project.max_rankings_per_item or 0)
    sql, params = "AND candidate.human_ranking_count < %s", [bound]
    if project.work_order == Project.WorkOrder.MODEL:
        sql, params = f"{sql} AND candidate.model_priority > %s", [bound, SATISFIED_PRIORITY]
    return sql, params


def needy_priorities_restore(*, project: Project) -> int:
    """Give items that need rankings again (more wanted per item, rankings deleted) the neutral priority."""
    wanted = F("extra_rankings") + project.rankings_per_item
    return Item.objects.filter(
        project=project, model_priority=SATISFIED_PRIORITY, human_ranking_count__lt=wanted
    ).update(model_priority=NEUTRAL_PRIORITY)
