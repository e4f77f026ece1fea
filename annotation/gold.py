"""Gold items: items with a known ranking, mixed into each annotator's work to measure their care.

Staff mark them in the item's admin page (`gold_item_set`) or by importing a file with `gold`
(annotation.imports). A gold item looks like any other on the ranking page. It is offered to an
annotator at the project's `gold_rate` (each "next" is a gold one with that chance, while gold items
they have not seen remain), to everyone regardless of `rankings_per_item`, and never through the
ordinary work order. Its rankings are kept out of exports unless one asks for them (`include_gold`), so
out of training; `annotation.annotator_quality` compares them with the known ranking.
"""

from __future__ import annotations

import random

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction

from common.errors import Invalid

from .candidates import CANDIDATE_COLUMNS, NOT_SEEN_BY_ANNOTATOR, not_seen_params
from .models import Item, Project

# Which draws come up gold; tests replace it with a seeded one.
chance = random.SystemRandom()


class GoldOrderInvalid(Invalid):
    """A known ranking that does not name each answer of the item exactly once."""


def gold_order_validate(*, item: Item, order: object) -> list[list[int]]:
    """The known ranking as tie groups of the item's answer ids, best first, each answer exactly once."""
    answer_ids = set(item.answers.values_list("pk", flat=True))
    if not isinstance(order, list) or not all(isinstance(group, list) and group for group in order):
        raise GoldOrderInvalid("A gold ranking is a list of groups of answer ids, best first: [[3], [1, 2]].")
    named = [answer_id for group in order for answer_id in group]
    if not all(isinstance(a, int) and not isinstance(a, bool) for a in named):
        raise GoldOrderInvalid("A gold ranking names answers by their ids (whole numbers).")
    if len(named) != len(set(named)) or set(named) != answer_ids:
        raise GoldOrderInvalid(
            f"A gold ranking must name each of the item's answers once: {sorted(answer_ids)}."
        )
    return [list(group) for group in order]


def gold_item_set(*, item: Item, order: list | None) -> Item:
    """Make the item gold with this known ranking, or (order None) an ordinary item again."""
    with transaction.atomic():
        item.gold_order = None if order is None else gold_order_validate(item=item, order=order)
        item.save(update_fields=["gold_order"])
    return item


def gold_item_pick(*, annotator: AbstractBaseUser, project: Project) -> tuple | None:
    """A gold item for this "next", with the same columns as the work query's row, or None.

    None most of the time (1 - gold_rate), and when the annotator has seen every gold item.
    """
    if project.gold_rate <= 0 or chance.random() >= project.gold_rate:
        return None
    table = Item._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT min(id), max(id) FROM {table} WHERE project_id = %s AND gold_order IS NOT NULL",
            [project.pk],
        )
        low, high = cursor.fetchone()
    if low is None:
        return None
    # A random starting point in the gold items' ids, then the first unseen one from there (wrapping round):
    # an index walk over item_project_gold_idx, not a sort of every gold item as ORDER BY random() would be.
    pivot = low + int(chance.random() * (high - low + 1))
    for bound in ("AND candidate.id >= %s", "AND candidate.id < %s"):
        row = _unseen_gold(annotator=annotator, project=project, bound=bound, pivot=pivot)
        if row is not None:
            return row
    return None


def _unseen_gold(*, annotator: AbstractBaseUser, project: Project, bound: str, pivot: int) -> tuple | None:
    sql = f"""
        SELECT {CANDIDATE_COLUMNS}
          FROM {Item._meta.db_table} candidate
         WHERE candidate.project_id = %s AND candidate.gold_order IS NOT NULL {bound}
           AND {NOT_SEEN_BY_ANNOTATOR}
         ORDER BY candidate.project_id, candidate.id
         LIMIT 1
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [annotator.pk, project.pk, pivot, *not_seen_params(annotator.pk)])
        return cursor.fetchone()
