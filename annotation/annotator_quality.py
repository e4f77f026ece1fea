"""Per-annotator figures of a project, the outliers among them, and excluding an annotator's rankings.

For each person who ranked in the project: Kendall's τ-b against the known ranking of the gold items they
ranked (annotation.gold), τ-b against the consensus of the others on the items others ranked too, the
median seconds per item, the share of orders sent untouched, and the share of their leases they skipped.
A person is marked when a figure is far from what careful work gives (the reasons say which). Staff can
leave a person's rankings out of exports and training (`AnnotatorExclusion`), and take that back.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Count

from preferences.consensus import ranked_pairs
from preferences.rankings import Mean, kendall_tau_b

from .models import AnnotatorExclusion, Assignment, Project, Ranking

# Thresholds that mark a person for a look (not a verdict): careful annotators rarely cross them.
GOLD_TAU_BELOW = 0.3
CONSENSUS_TAU_BELOW = 0.0
UNTOUCHED_ABOVE = 0.5
FASTER_THAN_SHARE_OF_MEDIAN = 0.25
MIN_FOR_A_MARK = 3  # figures over fewer items than this mark no one


@dataclass
class AnnotatorFigures:
    """One person's figures in a project; None where there is nothing to measure yet."""

    annotator_id: int
    username: str
    rankings: int = 0
    gold_items: int = 0
    gold_tau: float | None = None
    shared_items: int = 0
    consensus_tau: float | None = None
    median_seconds: float | None = None
    untouched_share: float | None = None
    skip_rate: float | None = None
    excluded: bool = False
    reasons: list[str] = field(default_factory=list)

    @property
    def marked(self) -> bool:
        """Whether a figure is out of the ordinary (see `reasons`)."""
        return bool(self.reasons)


def annotator_figures(*, project: Project) -> list[AnnotatorFigures]:
    """Every annotator's figures in the project, most rankings first, outliers marked."""
    rows = list(
        Ranking.objects.filter(item__project=project, source=Ranking.Source.HUMAN).values_list(
            "annotator_id", "item_id", "order", "seconds_spent", "order_changed", "item__gold_order"
        )
    )
    by_item: dict[int, list[tuple[int, list]]] = defaultdict(list)
    gold_tau: dict[int, Mean] = defaultdict(Mean)
    gold_count: dict[int, int] = defaultdict(int)
    seconds: dict[int, list[float]] = defaultdict(list)
    untouched: dict[int, list[bool]] = defaultdict(list)
    counts: dict[int, int] = defaultdict(int)
    for annotator_id, item_id, order, spent, changed, gold in rows:
        counts[annotator_id] += 1
        if spent is not None:
            seconds[annotator_id].append(spent)
        if changed is not None:
            untouched[annotator_id].append(not changed)
        if gold is not None:
            if order:
                gold_count[annotator_id] += 1
                gold_tau[annotator_id].add(kendall_tau_b(order, gold))
        elif order:
            by_item[item_id].append((annotator_id, order))
    consensus_tau: dict[int, Mean] = defaultdict(Mean)
    shared: dict[int, int] = defaultdict(int)
    for rankings in by_item.values():
        if len(rankings) < 2:
            continue
        for index, (annotator_id, order) in enumerate(rankings):
            others = [other for number, (_, other) in enumerate(rankings) if number != index]
            shared[annotator_id] += 1
            consensus_tau[annotator_id].add(kendall_tau_b(order, ranked_pairs(others)))
    # Skipped leases against items ranked: a ranking made without a lease (the API's import) counts too.
    skipped = dict(
        Assignment.objects.filter(project=project, status=Assignment.Status.SKIPPED)
        .values("annotator_id")
        .annotate(n=Count("id"))
        .values_list("annotator_id", "n")
    )
    skip_rate = {pk: n / (n + counts.get(pk, 0)) for pk, n in skipped.items()}
    skip_rate.update({pk: 0.0 for pk in counts if pk not in skipped})
    excluded = set(AnnotatorExclusion.objects.filter(project=project).values_list("annotator_id", flat=True))
    people = set(counts) | set(skip_rate)
    names = dict(get_user_model().objects.filter(pk__in=people).values_list("pk", "username"))
    figures = [
        AnnotatorFigures(
            annotator_id=pk,
            username=names.get(pk, f"#{pk}"),
            rankings=counts.get(pk, 0),
            gold_items=gold_count.get(pk, 0),
            gold_tau=gold_tau[pk].value if pk in gold_tau else None,
            shared_items=shared.get(pk, 0),
            consensus_tau=consensus_tau[pk].value if pk in consensus_tau else None,
            median_seconds=statistics.median(seconds[pk]) if seconds.get(pk) else None,
            untouched_share=sum(untouched[pk]) / len(untouched[pk]) if untouched.get(pk) else None,
            skip_rate=skip_rate.get(pk),
            excluded=pk in excluded,
        )
        for pk in people
    ]
    _mark_outliers(figures, seconds)
    return sorted(figures, key=lambda f: (-f.rankings, f.username))


def _mark_outliers(figures: list[AnnotatorFigures], seconds: dict[int, list[float]]) -> None:
    everyone = [s for spent in seconds.values() for s in spent]
    project_median = statistics.median(everyone) if everyone else None
    for f in figures:
        if f.gold_items >= MIN_FOR_A_MARK and f.gold_tau is not None and f.gold_tau < GOLD_TAU_BELOW:
            f.reasons.append(f"τ against gold {f.gold_tau:.2f} (below {GOLD_TAU_BELOW})")
        if (
            f.shared_items >= MIN_FOR_A_MARK
            and f.consensus_tau is not None
            and f.consensus_tau < CONSENSUS_TAU_BELOW
        ):
            f.reasons.append(f"τ against the others {f.consensus_tau:.2f} (below {CONSENSUS_TAU_BELOW})")
        if (
            f.rankings >= MIN_FOR_A_MARK
            and f.untouched_share is not None
            and f.untouched_share > UNTOUCHED_ABOVE
        ):
            f.reasons.append(f"{f.untouched_share:.0%} of orders sent untouched")
        if (
            f.rankings >= MIN_FOR_A_MARK
            and f.median_seconds is not None
            and project_median
            and f.median_seconds < FASTER_THAN_SHARE_OF_MEDIAN * project_median
        ):
            f.reasons.append(f"median {f.median_seconds:.1f} s per item (project: {project_median:.1f} s)")


def annotator_exclude(*, project: Project, annotator: AbstractBaseUser, by: AbstractBaseUser | None) -> None:
    """Leave the annotator's rankings of the project out of exports and training from now on."""
    try:
        with transaction.atomic():
            AnnotatorExclusion.objects.create(
                project=project, annotator=annotator, excluded_by=by if by and by.is_authenticated else None
            )
    except IntegrityError:
        pass  # already excluded: the action is idempotent


def annotator_include(*, project: Project, annotator: AbstractBaseUser) -> None:
    """Take an exclusion back: the annotator's rankings count again."""
    AnnotatorExclusion.objects.filter(project=project, annotator=annotator).delete()
