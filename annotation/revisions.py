"""Undo: an annotator's own recent rankings, and changing one within the project's revision window.

The change is made to the ranking row itself, so exports, counters, consensus and training see only the
current version with nothing else to filter; the version it replaces is kept as a `RankingRevision`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from common.errors import Conflict, NotFound

from .assignment import (
    _clean_comment,
    _clean_flags,
    _clean_order,
    _clean_seconds,
    _order_changed,
)
from .models import Assignment, Project, Ranking, RankingRevision

MY_RANKINGS_SHOWN = 50


class RankingNotYours(NotFound):
    """No such ranking among the annotator's own."""


class RevisionWindowClosed(Conflict):
    """The ranking is older than the project's revision window."""


@dataclass(frozen=True)
class MyRanking:
    """One line of "My rankings": what was ranked, when, and until when it can be changed."""

    ranking: Ranking
    prompt: str
    editable_until: datetime | None
    revisions: int


def ranking_editable_until(*, ranking: Ranking, project: Project) -> datetime | None:
    """When the window to change this ranking closes; None when the project allows no changes."""
    if not project.revision_window_hours:
        return None
    return ranking.created_at + timedelta(hours=project.revision_window_hours)


def _prompt_of(conversation: list) -> str:
    for turn in reversed(conversation or []):
        if isinstance(turn, dict) and turn.get("role") == "user":
            return str(turn.get("content", ""))
    return ""


def rankings_mine(
    *, annotator: AbstractBaseUser, project: Project, limit: int = MY_RANKINGS_SHOWN
) -> list[MyRanking]:
    """The annotator's latest rankings in the project, newest first."""
    rankings = (
        Ranking.objects.filter(item__project=project, annotator=annotator, source=Ranking.Source.HUMAN)
        .select_related("item")
        .order_by("-created_at", "-id")[:limit]
    )
    counts: dict[int, int] = {}
    for ranking_id in RankingRevision.objects.filter(ranking__in=[r.pk for r in rankings]).values_list(
        "ranking_id", flat=True
    ):
        counts[ranking_id] = counts.get(ranking_id, 0) + 1
    return [
        MyRanking(
            ranking=r,
            prompt=_prompt_of(r.item.conversation)[:200],
            editable_until=ranking_editable_until(ranking=r, project=project),
            revisions=counts.get(r.pk, 0),
        )
        for r in rankings
    ]


def ranking_own(*, ranking_id: int, annotator: AbstractBaseUser) -> Ranking:
    """The annotator's own ranking (with its item and project), or RankingNotYours."""
    ranking = (
        Ranking.objects.filter(pk=ranking_id, annotator=annotator, source=Ranking.Source.HUMAN)
        .select_related("item__project")
        .first()
    )
    if ranking is None or not ranking.item.project.is_active:
        raise RankingNotYours("This ranking does not exist or is not yours.")
    return ranking


def ranking_check_window(*, ranking: Ranking, now: datetime | None = None) -> None:
    """RevisionWindowClosed unless the ranking may still be changed."""
    now = now or timezone.now()
    until = ranking_editable_until(ranking=ranking, project=ranking.item.project)
    if until is None:
        raise RevisionWindowClosed("This project does not allow changing a ranking once it is sent.")
    if now > until:
        raise RevisionWindowClosed(
            f"This ranking can no longer be changed: the window closed at {until:%Y-%m-%d %H:%M} UTC."
        )


def ranking_revise(
    *,
    ranking_id: int,
    annotator: AbstractBaseUser,
    order: list,
    not_rankable: bool = False,
    flags: dict | None = None,
    comment: str = "",
    seconds_spent: float | None = None,
) -> Ranking:
    """Replace the annotator's ranking with a new version, keeping the old one as a revision."""
    now = timezone.now()
    with transaction.atomic():
        ranking = ranking_own(ranking_id=ranking_id, annotator=annotator)
        ranking = Ranking.objects.select_for_update().select_related("item__project").get(pk=ranking.pk)
        ranking_check_window(ranking=ranking, now=now)
        project = ranking.item.project
        answer_ids = sorted(answer_id for group in ranking.order for answer_id in group) or list(
            ranking.item.answers.values_list("pk", flat=True)
        )
        lease = Assignment.objects.filter(ranking=ranking).only("answer_order").first()
        shown = list(lease.answer_order) if lease else answer_ids
        groups = _clean_order(
            order=order, answer_ids=shown, allow_ties=project.allow_ties, not_rankable=bool(not_rankable)
        )
        cleaned_flags = _clean_flags(flags=flags, answer_ids=shown, labels=list(project.flag_labels or []))
        comment = _clean_comment(comment)
        RankingRevision.objects.create(
            ranking=ranking,
            order=ranking.order,
            not_rankable=ranking.not_rankable,
            flags=ranking.flags,
            comment=ranking.comment,
            seconds_spent=ranking.seconds_spent,
            order_changed=ranking.order_changed,
            ranked_at=ranking.revisions.order_by("-replaced_at").values_list("replaced_at", flat=True).first()
            or ranking.created_at,
        )
        seconds = _clean_seconds(seconds_spent)
        ranking.order = groups
        ranking.not_rankable = bool(not_rankable)
        ranking.flags = cleaned_flags
        ranking.comment = comment
        ranking.seconds_spent = (ranking.seconds_spent or 0) + seconds if seconds is not None else None
        ranking.order_changed = _order_changed(groups, shown)
        ranking.changed_at = now
        ranking.save(
            update_fields=[
                "order",
                "not_rankable",
                "flags",
                "comment",
                "seconds_spent",
                "order_changed",
                "changed_at",
            ]
        )
    return ranking
