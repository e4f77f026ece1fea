"""A heartbeat kept fresh from a thread during long work: how a reaper tells live work from dead.

Training runs and import jobs both use it; it knows nothing of either, only the rows to touch.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import DatabaseError, connections
from django.db.models import QuerySet
from django.utils import timezone

__all__ = ["heartbeat_in_background"]

log = logging.getLogger(__name__)


@contextmanager
def heartbeat_in_background(
    *, rows: QuerySet, every_seconds: float, field: str = "heartbeat_at"
) -> Iterator[None]:
    """Set `field` of `rows` to now every `every_seconds` from a thread, while the block runs.

    The thread writes through its own database connection, so each beat commits at once even while
    the caller sits inside a long transaction. Filter `rows` on the state that should still beat
    (say, status=running): once someone else finishes the job, the beats stop touching it.
    """
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(every_seconds):
                try:
                    rows.update(**{field: timezone.now()})
                except DatabaseError:
                    # One failed beat must not end them all, or the reaper would fail live work.
                    log.warning("Heartbeat of %s failed; trying again", rows.model.__name__, exc_info=True)
                    connections[rows.db].close()
        finally:
            connections[rows.db].close()  # the thread's own connection

    thread = threading.Thread(target=beat, name=f"heartbeat-{rows.model._meta.label_lower}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
