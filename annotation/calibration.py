"""A calibration set: the project's first N items get all their rankings before any other item gets one.

Agreement needs items that several people ranked; with the ordinary work order (fewest rankings first)
overlap only starts once every item has its first ranking. With `calibration_items` = N, each "next"
first looks among the first N items (by id, gold items aside) for one with a free slot, so agreement has
material from the start; once they are full the ordinary order goes on.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection

from .candidates import CANDIDATE_COLUMNS, NOT_SEEN_BY_ANNOTATOR, not_seen_params
from .models import Item, Project


def calibration_item_pick(*, annotator: AbstractBaseUser, project: Project) -> tuple | None:
    """A calibration item with a free slot for the annotator, locked, as the work query's row; or None."""
    if not project.calibration_items:
        return None
    table = Item._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM {table} WHERE project_id = %s AND gold_order IS NULL "
            "ORDER BY id LIMIT 1 OFFSET %s",
            [project.pk, project.calibration_items - 1],
        )
        last = cursor.fetchone()
    bound = "" if last is None else "AND candidate.id <= %s"
    locking = "FOR UPDATE OF candidate SKIP LOCKED" if connection.vendor == "postgresql" else ""
    sql = f"""
        SELECT {CANDIDATE_COLUMNS}
          FROM {table} candidate
         WHERE candidate.project_id = %s AND candidate.gold_order IS NULL {bound}
           AND candidate.human_ranking_count + candidate.open_lease_count < %s + candidate.extra_rankings
           AND {NOT_SEEN_BY_ANNOTATOR}
         ORDER BY candidate.human_ranking_count DESC, candidate.id
         LIMIT 1
         {locking}
    """
    params = [annotator.pk, project.pk, *([last[0]] if last else []), project.rankings_per_item]
    params += not_seen_params(annotator.pk)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()
