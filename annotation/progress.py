"""Reads about how far a project and its annotators have got, for the ranking page, the API and staff."""

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db import connection
from django.db.models import Avg, Count, Max, Q, QuerySet, Sum, Value
from django.db.models.functions import Least
from django.utils import timezone

from .models import Assignment, Item, Project, Ranking


def _start_of_today() -> datetime:
    return timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)


def project_progress_totals(*, project: Project) -> tuple[int, int]:
    """Rankings collected towards the goal and the goal (items × rankings_per_item), shared a few seconds.

    Gold items are not part of the goal: everyone ranks them, however many rankings_per_item asks for.
    """
    # Summing over every item grows with the project, so it is shared for a few seconds per process
    # instead of being paid on every "next"; the annotator's own counts below stay exact.
    key = f"annotation:project-totals:{project.pk}:{project.rankings_per_item}"
    totals = cache.get(key)
    if totals is None:
        wanted = project.rankings_per_item
        row = Item.objects.filter(project=project, gold_order__isnull=True).aggregate(
            items=Count("id"), done=Sum(Least("human_ranking_count", Value(wanted)))
        )
        totals = (row["done"] or 0, row["items"] * wanted)
        cache.set(key, totals, settings.PROJECT_PROGRESS_CACHE_SECONDS)
    return totals


def annotator_progress(*, annotator: AbstractBaseUser, project: Project) -> dict[str, int]:
    """The annotator's rankings today and in total, and the project's rankings collected out of wanted."""
    # Plain SQL: it runs with every "next", and composing the aggregate through the ORM cost more CPU
    # than PostgreSQL spends on it (an index range on `ranking_annotator_created_idx`).
    sql = f"""
        SELECT COUNT(*), COALESCE(SUM(CASE WHEN ranking.created_at >= %s THEN 1 ELSE 0 END), 0)
          FROM {Ranking._meta.db_table} ranking
          JOIN {Item._meta.db_table} item ON item.id = ranking.item_id
         WHERE ranking.annotator_id = %s AND ranking.source = %s AND item.project_id = %s
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [_start_of_today(), annotator.pk, Ranking.Source.HUMAN.value, project.pk])
        total, today = cursor.fetchone()
    project_done, project_wanted = project_progress_totals(project=project)
    return {
        "mine_today": today,
        "mine_total": total,
        "project_done": project_done,
        "project_wanted": project_wanted,
    }


@dataclass(frozen=True)
class ItemStatusCounts:
    """How many items of a project are done, being worked on, or untouched; gold items are counted apart."""

    total: int
    done: int
    in_progress: int
    waiting: int
    open_leases: int
    gold: int = 0


def project_item_status_counts(*, project: Project) -> ItemStatusCounts:
    """Items with all the rankings wanted, with some rankings or an open lease, and with neither.

    Gold items, which everyone ranks, are only counted (`gold`); their leases count among the open ones.
    """
    wanted = project.rankings_per_item
    ordinary = Q(gold_order__isnull=True)
    row = Item.objects.filter(project=project).aggregate(
        total=Count("id", filter=ordinary),
        done=Count("id", filter=ordinary & Q(human_ranking_count__gte=wanted)),
        waiting=Count("id", filter=ordinary & Q(human_ranking_count=0, open_lease_count=0)),
        open_leases=Sum("open_lease_count", default=0),
        gold=Count("id", filter=~ordinary),
    )
    return ItemStatusCounts(
        total=row["total"],
        done=row["done"],
        in_progress=row["total"] - row["done"] - row["waiting"],
        waiting=row["waiting"],
        open_leases=row["open_leases"],
        gold=row["gold"],
    )


@dataclass(frozen=True)
class AnnotatorStats:
    """One annotator's work in one project."""

    annotator_id: int
    username: str
    rankings: int
    today: int
    not_rankable: int
    flagged: int
    skipped: int
    open_leases: int
    avg_seconds: float | None
    last_ranked_at: datetime | None


def project_annotator_stats(*, project: Project) -> list[AnnotatorStats]:
    """Per annotator: rankings (today, not rankable, with flags), skips, open leases; most rankings first."""
    rankings = (
        Ranking.objects.filter(item__project=project, source=Ranking.Source.HUMAN)
        .values("annotator_id", "annotator__username")
        .annotate(
            total=Count("id"),
            today=Count("id", filter=Q(created_at__gte=_start_of_today())),
            not_rankable=Count("id", filter=Q(not_rankable=True)),
            flagged=Count("id", filter=~Q(flags={})),
            avg_seconds=Avg("seconds_spent"),
            last=Max("created_at"),
        )
    )
    leases = (
        Assignment.objects.filter(project=project)
        .values("annotator_id", "annotator__username")
        .annotate(
            skipped=Count("id", filter=Q(status=Assignment.Status.SKIPPED)),
            open=Count("id", filter=Q(status=Assignment.Status.OPEN, expires_at__gt=timezone.now())),
        )
    )
    by_annotator: dict[int, dict] = {}
    for row in rankings:
        by_annotator[row["annotator_id"]] = {**row, "skipped": 0, "open": 0}
    for row in leases:
        entry = by_annotator.setdefault(
            row["annotator_id"],
            {
                "annotator__username": row["annotator__username"],
                "total": 0,
                "today": 0,
                "not_rankable": 0,
                "flagged": 0,
                "avg_seconds": None,
                "last": None,
            },
        )
        entry["skipped"], entry["open"] = row["skipped"], row["open"]
    stats = [
        AnnotatorStats(
            annotator_id=annotator_id,
            username=row["annotator__username"],
            rankings=row["total"],
            today=row["today"],
            not_rankable=row["not_rankable"],
            flagged=row["flagged"],
            skipped=row["skipped"],
            open_leases=row["open"],
            avg_seconds=row["avg_seconds"],
            last_ranked_at=row["last"],
        )
        for annotator_id, row in by_annotator.items()
    ]
    return sorted(stats, key=lambda s: (-s.rankings, s.username))


def project_recent_rankings(*, project: Project, limit: int = 25) -> QuerySet[Ranking]:
    """The project's latest human rankings, newest first, with annotator and item loaded."""
    return (
        Ranking.objects.filter(item__project=project, source=Ranking.Source.HUMAN)
        .select_related("annotator", "item")
        .order_by("-created_at")[:limit]
    )
