"""Transaction-scoped advisory locks on PostgreSQL: work of one kind on one key takes turns.

Each kind of work has its own namespace here, so two kinds never wait for each other by accident.
SQLite (`make run`) lets one writer at a time anyway, so there the locks are no-ops.
"""

from django.db import connection

# One person's concurrent "next" requests (two tabs, a double click), keyed by the annotator.
ANNOTATOR_NEXT = 60_601
# Imports into one project, keyed by the project: they would race on the external ids.
PROJECT_IMPORT = 60_602


def advisory_xact_lock(*, namespace: int, key: int) -> None:
    """Wait for the lock (namespace, key) and hold it until the current transaction ends."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        # The two-key form takes int4 keys and ids may be bigints: fold the key (two keys that fold
        # alike only take turns).
        cursor.execute("SELECT pg_advisory_xact_lock(%s, (%s::bigint %% 2147483647)::int)", [namespace, key])
