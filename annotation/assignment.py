"""Handing out items to annotators (leases), and taking their rankings back.

The rules, enforced here for both the ranking page and the API:

- an item is offered while `human_ranking_count + open_lease_count` is below the project's
  `rankings_per_item`; both counters live on the item row and change only under that row's lock,
  so concurrent requests can never hand out more slots than there are;
- never to someone who already ranked or skipped it (an expired lease may be offered again);
- one open lease per annotator and project: asking again returns the same lease, same order;
- finding work is one index range scan on `item_project_need_idx` ordered by
  `(human_ranking_count, id)` (or, in the `model` work order, on `item_project_model_idx` by
  `(model_priority desc, id)`; see `annotation.work_order`) that stops at the first free item, with
  `FOR UPDATE SKIP LOCKED` so that annotators asking at the same moment step past each other's rows
  instead of queueing; a disputed item wants `extra_rankings` more than the project's number;
- nothing slow happens under a row lock: the item's Markdown is rendered (and stored for later
  leases) after the lease's transaction has committed.
"""

import math
import random
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import Count, F, OuterRef, Prefetch, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from common.errors import Conflict, DomainError, Invalid, NotFound

from .calibration import calibration_item_pick
from .candidates import CANDIDATE_COLUMNS, NOT_SEEN_BY_ANNOTATOR, not_seen_params
from .gold import gold_item_pick
from .item_html import item_html_store
from .locks import ANNOTATOR_NEXT, advisory_xact_lock
from .models import Answer, Assignment, Item, Project, Ranking
from .work_order import (
    item_dispute_check,
    needy_priorities_restore,
    order_by_sql,
    priority_after_ranking,
    scan_bounds_sql,
)

COMMENT_MAX_LENGTH = 5000


class AssignmentError(DomainError):
    """A request about an assignment that cannot be honoured; the message is shown to the annotator."""


class AssignmentNotFound(AssignmentError, NotFound):
    """No such assignment for this annotator (someone else's leases look exactly like missing ones)."""


class AssignmentConflict(AssignmentError, Conflict):
    """The lease is no longer open: it expired, or was skipped or submitted."""


class RankingInvalid(AssignmentError, Invalid):
    """The submitted ranking does not fit the assignment or the project's rules."""


def _lease_expiry(now: datetime) -> datetime:
    return now + timedelta(seconds=settings.ASSIGNMENT_LEASE_SECONDS)


def _release_slot(*, item_id: int) -> None:
    # F() keeps the decrement atomic under the item row lock the UPDATE itself takes.
    Item.objects.filter(pk=item_id, open_lease_count__gt=0).update(open_lease_count=F("open_lease_count") - 1)


def assignments_expire(*, now: datetime | None = None) -> int:
    """Close open leases whose time ran out and return their slots to the pool; returns how many."""
    now = now or timezone.now()
    # Nearly every call finds nothing: answer that with one index probe, without opening a transaction.
    if not Assignment.objects.filter(status=Assignment.Status.OPEN, expires_at__lte=now).exists():
        return 0
    with transaction.atomic():
        # SKIP LOCKED: a lease being submitted or swept by someone else right now is theirs to finish.
        expired = list(
            Assignment.objects.filter(status=Assignment.Status.OPEN, expires_at__lte=now)
            .select_for_update(skip_locked=True)
            .order_by("item_id")
            .values_list("pk", "item_id")
        )
        if not expired:
            return 0
        Assignment.objects.filter(pk__in=[pk for pk, _ in expired]).update(
            status=Assignment.Status.EXPIRED, finished_at=now
        )
        # Items in id order, so two sweeps never wait on each other in opposite orders.
        for _, item_id in expired:
            _release_slot(item_id=item_id)
    return len(expired)


def _open_lease(
    *, annotator: AbstractBaseUser, project: Project, now: datetime
) -> tuple[Assignment | None, bool]:
    """The annotator's live lease, if any, and whether a lapsed one of theirs was just closed."""
    lease = (
        Assignment.objects.filter(project=project, annotator=annotator, status=Assignment.Status.OPEN)
        .order_by("-created_at")
        .first()
    )
    if lease is None or lease.expires_at > now:
        return lease, False
    # Run out, but the sweep stepped past it (it was locked at that moment): close it here.
    closed = Assignment.objects.filter(pk=lease.pk, status=Assignment.Status.OPEN).update(
        status=Assignment.Status.EXPIRED, finished_at=now
    )
    if closed:
        _release_slot(item_id=lease.item_id)
    return None, bool(closed)


def free_item_query(
    *,
    annotator: AbstractBaseUser,
    project: Project,
    item_id: int | None = None,
    lock: str = "skip",
) -> tuple[str, list]:
    """SQL and parameters of the query behind assignment_next (also for EXPLAIN); lock: skip, wait or none."""
    # Written as SQL rather than built with the ORM: it runs on every "next", and composing the two
    # NOT EXISTS and the subquery through the ORM cost several times more CPU than PostgreSQL spends
    # running it. The plan (`tests/test_assignment.py`, `benchmarks/assignment_load.py`) is one range
    # scan of `item_project_need_idx` in index order that stops at the first row that fits.
    # At most one assignment per item and person (a unique constraint), and NOT EXISTS below rules out
    # all but an expired one: the subquery in SELECT finds the lapsed lease to reopen, by that index.
    only_item = "" if item_id is None else "AND candidate.id = %s"
    bounds, bound_params = scan_bounds_sql(project=project)
    locking = {"skip": "FOR UPDATE OF candidate SKIP LOCKED", "wait": "FOR UPDATE OF candidate", "none": ""}
    sql = f"""
        SELECT {CANDIDATE_COLUMNS}
          FROM {Item._meta.db_table} candidate
         WHERE candidate.project_id = %s AND candidate.gold_order IS NULL
           AND candidate.human_ranking_count < %s + candidate.extra_rankings
           AND candidate.human_ranking_count + candidate.open_lease_count < %s + candidate.extra_rankings
           AND {NOT_SEEN_BY_ANNOTATOR}
           {only_item}
           {bounds}
         ORDER BY {order_by_sql(project=project)}
         LIMIT 1
         {locking[lock] if connection.vendor == "postgresql" else ""}
    """
    wanted = project.rankings_per_item
    params = [annotator.pk, project.pk, wanted, wanted, *not_seen_params(annotator.pk)]
    return sql, [*params, *([] if item_id is None else [item_id]), *bound_params]


def _fetch_one(sql: str, params: list) -> tuple | None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


class _FreeItemsAllLocked(Exception):
    """Every item with a free slot was locked by another request at that instant."""


class _RowNoLongerFits(Exception):
    pass


def _wait_for_free_item(*, annotator: AbstractBaseUser, project: Project) -> tuple | None:
    # A locking query keeps the lock on every row it looked at whose re-check failed, so a scan that
    # waits could hold one row while it waits for another, and two such scans deadlock. Here we wait
    # for one named row at a time, in a savepoint that lets go of it if it no longer fits.
    while True:
        first = _fetch_one(*free_item_query(annotator=annotator, project=project, lock="none"))
        if first is None:
            return None
        try:
            with transaction.atomic():
                sql, params = free_item_query(
                    annotator=annotator, project=project, item_id=first[0], lock="wait"
                )
                row = _fetch_one(sql, params)
                if row is None:
                    raise _RowNoLongerFits
                return row
        except _RowNoLongerFits:
            continue


def _item_with_answers(item_id: int) -> Item:
    return (
        Item.objects.only("id", "conversation", "rendered")
        .prefetch_related(Prefetch("answers", queryset=Answer.objects.only("id", "item_id", "text")))
        .get(pk=item_id)
    )


def _lease_new_item(
    *, annotator: AbstractBaseUser, project: Project, now: datetime, wait: bool
) -> Assignment | None:
    with transaction.atomic():
        # One person's concurrent "next" requests (two tabs, a double click) get one lease; other
        # annotators are not affected.
        advisory_xact_lock(namespace=ANNOTATOR_NEXT, key=annotator.pk)
        lease, closed_own_lease = _open_lease(annotator=annotator, project=project, now=now)
        if lease is not None:
            lease.item = _item_with_answers(lease.item_id)
            return lease
        # Now and then a gold item instead (annotation.gold); it is nobody's slot, so no wait for it.
        chosen = None if wait else gold_item_pick(annotator=annotator, project=project)
        if chosen is None and not wait:
            # The calibration set fills first (annotation.calibration), so that overlap starts at once.
            chosen = calibration_item_pick(annotator=annotator, project=project)
        if chosen is not None:
            row = chosen
        elif wait:
            row = _wait_for_free_item(annotator=annotator, project=project)
        else:
            # The row comes back locked and, if another request changed it meanwhile, re-checked by
            # PostgreSQL against the same conditions; this person's own leases cannot change meanwhile
            # (the advisory lock).
            row = _fetch_one(*free_item_query(annotator=annotator, project=project, lock="skip"))
            if row is None and not closed_own_lease:
                # Leaving the block by an exception rolls back, which lets go of every row lock this
                # scan took, before assignment_next waits for a row. (After closing our own lapsed
                # lease we hold that item's row and must not wait: we answer "no work" instead.)
                raise _FreeItemsAllLocked
        if row is None:
            return None
        item_id, _, _, lapsed_lease_id = row
        item = _item_with_answers(item_id)
        Item.objects.filter(pk=item_id).update(open_lease_count=F("open_lease_count") + 1)
        if lapsed_lease_id is not None:
            # The same person comes back to an item whose lease ran out: reopen it, same answer order.
            Assignment.objects.filter(pk=lapsed_lease_id).update(
                status=Assignment.Status.OPEN, expires_at=_lease_expiry(now), finished_at=None
            )
            lease = Assignment.objects.get(pk=lapsed_lease_id)
        else:
            answer_ids = [answer.pk for answer in item.answers.all()]
            random.SystemRandom().shuffle(answer_ids)
            lease = Assignment.objects.create(
                item=item,
                project=project,
                annotator=annotator,
                answer_order=answer_ids,
                expires_at=_lease_expiry(now),
            )
        lease.item = item  # with its answers loaded, for the caller's payload
        return lease


def assignment_next(*, annotator: AbstractBaseUser, project: Project) -> Assignment | None:
    """The annotator's open lease in the project, or a new one on the next item that needs them, or None."""
    if not project.is_active:
        return None
    now = timezone.now()
    # Sweeping here returns abandoned slots to the pool without depending on a scheduler; when nothing has
    # expired it is one probe of `assignment_expiry_idx`.
    assignments_expire(now=now)
    try:
        lease = _lease_new_item(annotator=annotator, project=project, now=now, wait=False)
    except _FreeItemsAllLocked:
        # Nothing free that nobody else had locked at that instant (a small project, or its last items):
        # queue for those rows rather than say "no work" while slots remain.
        lease = _lease_new_item(annotator=annotator, project=project, now=now, wait=True)
    if lease is not None:
        # Outside the lease's transaction, holding no lock: converting Markdown may take a while (within
        # its bounds), and meanwhile others lease, submit and skip this item. The first lease stores the
        # HTML on the item; the payload of this and every later lease reads it from there.
        item_html_store(item=lease.item)
    return lease


def _locked_assignment(*, assignment_id: int, annotator: AbstractBaseUser) -> Assignment:
    assignment = (
        Assignment.objects.select_for_update(of=("self",))
        .select_related("project")
        .filter(pk=assignment_id, annotator=annotator, project__is_active=True)
        .first()
    )
    if assignment is None:
        # A paused project's leases are gone with it: inactive projects are invisible to annotators.
        raise AssignmentNotFound("This assignment does not exist, is not yours, or its project is paused.")
    return assignment


def _check_still_open(assignment: Assignment, now: datetime) -> None:
    if assignment.status == Assignment.Status.SKIPPED:
        raise AssignmentConflict("You skipped this item; load the next one.")
    if assignment.status == Assignment.Status.EXPIRED or assignment.expires_at <= now:
        raise AssignmentConflict(
            "Your time on this item ran out and it went back to the pool. Load the next item to go on."
        )


def _clean_order(*, order, answer_ids: list[int], allow_ties: bool, not_rankable: bool) -> list[list[int]]:
    if not isinstance(order, list):
        raise RankingInvalid("The order must be a list of groups of answer ids, best first.")
    if not order and not_rankable:
        return []
    groups: list[list[int]] = []
    for group in order:
        if not isinstance(group, list) or not group:
            raise RankingInvalid("Each place in the order must be a non-empty list of answer ids.")
        if not all(isinstance(answer_id, int) and not isinstance(answer_id, bool) for answer_id in group):
            raise RankingInvalid("Each place in the order must be a non-empty list of answer ids.")
        if len(group) > 1 and not allow_ties:
            raise RankingInvalid("This project does not allow ties: put every answer in its own place.")
        groups.append(list(group))
    named = [answer_id for group in groups for answer_id in group]
    if len(named) != len(set(named)):
        raise RankingInvalid("Each answer may appear only once in the order.")
    if set(named) != set(answer_ids):
        raise RankingInvalid("Rank every answer of this item, and only those.")
    return groups


def _clean_flags(*, flags, answer_ids: list[int], labels: list[str]) -> dict[str, list[str]]:
    if flags in (None, {}):
        return {}
    if not isinstance(flags, dict):
        raise RankingInvalid("Flags must map an answer id to a list of labels.")
    cleaned: dict[str, list[str]] = {}
    for key, answer_labels in flags.items():
        try:
            answer_id = int(key)
        except (TypeError, ValueError):
            raise RankingInvalid(f"{key!r} is not an answer id.") from None
        if answer_id not in answer_ids:
            raise RankingInvalid("Flags may only be put on this item's answers.")
        if not isinstance(answer_labels, list) or not all(isinstance(label, str) for label in answer_labels):
            raise RankingInvalid("The flags of an answer must be a list of labels.")
        unknown = sorted(set(answer_labels) - set(labels))
        if unknown:
            allowed = ", ".join(labels)
            raise RankingInvalid(f"Unknown flag {unknown[0]!r}: this project's flags are {allowed}.")
        if answer_labels:
            # Keep the project's order of labels, once each, whatever order the client sent them in.
            cleaned[str(answer_id)] = [label for label in labels if label in answer_labels]
    return cleaned


def _clean_comment(comment) -> str:
    if not isinstance(comment, str) or len(comment) > COMMENT_MAX_LENGTH:
        raise RankingInvalid(f"The comment must be text of at most {COMMENT_MAX_LENGTH} characters.")
    return comment.strip()


def _order_changed(groups: list[list[int]], shown: list[int]) -> bool | None:
    """Whether a ranking differs from the order its answers were shown in; None for not rankable."""
    return (groups != [[answer_id] for answer_id in shown]) if groups else None


def _clean_seconds(seconds_spent) -> float | None:
    if seconds_spent is None:
        return None
    if isinstance(seconds_spent, bool) or not isinstance(seconds_spent, int | float):
        raise RankingInvalid("seconds_spent must be a number.")
    if not math.isfinite(seconds_spent) or seconds_spent < 0:
        raise RankingInvalid("seconds_spent must be zero or more.")
    return float(seconds_spent)


def ranking_submit(
    *,
    assignment_id: int,
    annotator: AbstractBaseUser,
    order: list,
    not_rankable: bool = False,
    flags: dict | None = None,
    comment: str = "",
    seconds_spent: float | None = None,
) -> tuple[Ranking, bool]:
    """Record the annotator's ranking for their lease; a repeat returns the first ranking and False."""
    now = timezone.now()
    with transaction.atomic():
        # Lock order everywhere: assignment row, then item row (see assignments_expire and assignment_skip).
        assignment = _locked_assignment(assignment_id=assignment_id, annotator=annotator)
        if assignment.status == Assignment.Status.SUBMITTED and assignment.ranking_id is not None:
            return assignment.ranking, False
        _check_still_open(assignment, now)
        project = assignment.project
        answer_ids = list(assignment.answer_order)
        groups = _clean_order(
            order=order, answer_ids=answer_ids, allow_ties=project.allow_ties, not_rankable=bool(not_rankable)
        )
        labels = list(project.flag_labels or [])
        cleaned_flags = _clean_flags(flags=flags, answer_ids=answer_ids, labels=labels)
        comment = _clean_comment(comment)
        ranking = Ranking.objects.create(
            item_id=assignment.item_id,
            source=Ranking.Source.HUMAN,
            annotator=annotator,
            order=groups,
            not_rankable=bool(not_rankable),
            flags=cleaned_flags,
            comment=comment,
            seconds_spent=_clean_seconds(seconds_spent),
            order_changed=_order_changed(groups, answer_ids),
        )
        Item.objects.filter(pk=assignment.item_id).update(
            human_ranking_count=F("human_ranking_count") + 1,
            open_lease_count=F("open_lease_count") - 1,
            model_priority=priority_after_ranking(project=project),
        )
        item_dispute_check(item_id=assignment.item_id, project=project)
        assignment.status = Assignment.Status.SUBMITTED
        assignment.ranking = ranking
        assignment.finished_at = now
        assignment.save(update_fields=["status", "ranking", "finished_at"])
    return ranking, True


def assignment_skip(*, assignment_id: int, annotator: AbstractBaseUser) -> Assignment:
    """Give the item back; it is never offered to this annotator again. Skipping twice is harmless."""
    now = timezone.now()
    with transaction.atomic():
        assignment = _locked_assignment(assignment_id=assignment_id, annotator=annotator)
        if assignment.status == Assignment.Status.SKIPPED:
            return assignment
        if assignment.status == Assignment.Status.SUBMITTED:
            raise AssignmentConflict("You already ranked this item, so it cannot be skipped.")
        if assignment.status == Assignment.Status.OPEN:
            # An open lease holds a slot even after its time ran out, until it is swept or closed here.
            _release_slot(item_id=assignment.item_id)
        assignment.status = Assignment.Status.SKIPPED
        assignment.finished_at = now
        assignment.save(update_fields=["status", "finished_at"])
    return assignment


def _count_per_item(rows: QuerySet) -> Coalesce:
    # The number of `rows` that belong to the outer query's item, 0 when none do.
    per_item = rows.filter(item_id=OuterRef("pk")).order_by().values("item_id").annotate(n=Count("id"))
    return Coalesce(Subquery(per_item.values("n")), 0)


def item_counters_recount(*, project: Project) -> int:
    """Set every item's ranking and lease counters from the rows (after admin edits); returns items fixed."""
    ranked = _count_per_item(Ranking.objects.filter(source=Ranking.Source.HUMAN))
    leased = _count_per_item(Assignment.objects.filter(status=Assignment.Status.OPEN))
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # Holds off submits, skips and new leases (which change the counters) until the recount is
            # written; they wait a moment and then apply their own +1/-1 on top of the true figure.
            with connection.cursor() as cursor:
                cursor.execute(f"LOCK TABLE {Item._meta.db_table} IN SHARE ROW EXCLUSIVE MODE")
        wrong = (
            Item.objects.filter(project=project)
            .alias(ranked=ranked, leased=leased)
            .exclude(human_ranking_count=F("ranked"), open_lease_count=F("leased"))
        )
        fixed = wrong.update(human_ranking_count=ranked, open_lease_count=leased)
        needy_priorities_restore(project=project)
        return fixed
