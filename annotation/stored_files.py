"""Files in the media storage that rows name (snapshots, import uploads), deleted with their rows on commit.

The rows go in several ways: one by one or in bulk in the admin, pruned by `export_snapshot_prune`, or in
the database cascade of `project_delete`, where no service sees them. So this is the one cleanup done by
a `post_delete` receiver rather than by the services (STYLE, 3): Django sends `post_delete` for every row
a cascade or a queryset delete removes (a model with receivers is never fast-deleted), and one receiver
covers every path. The file is deleted only once the deletion commits: a delete that rolls back keeps
both row and file, and a file deleted by a commit that never came cannot be lost.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models.signals import post_delete

from .models import ExportSnapshot, ImportJob

log = logging.getLogger(__name__)

# The file field of each model whose file goes with its row.
ROW_FILES: dict[type, str] = {ExportSnapshot: "file", ImportJob: "upload"}


def stored_file_delete_on_commit(*, name: str, using: str | None = None) -> None:
    """Delete `name` from the media storage once the current transaction commits (at once outside one)."""
    if name:
        # robust: a file that cannot be deleted is logged, and never fails the request that committed.
        transaction.on_commit(partial(_stored_file_delete, name=name), using=using, robust=True)


def _stored_file_delete(*, name: str) -> None:
    default_storage.delete(name)  # a file already gone is no error
    log.info("Deleted %s with its row", name)


def _row_deleted(sender: type, instance: Any, using: str, **kwargs: Any) -> None:
    stored_file_delete_on_commit(name=getattr(instance, ROW_FILES[sender]).name, using=using)


def stored_files_follow_rows() -> None:
    """Delete each snapshot's and import job's file when its row is deleted (AnnotationConfig.ready)."""
    for model in ROW_FILES:
        post_delete.connect(_row_deleted, sender=model, dispatch_uid=f"stored-file-of-{model._meta.label}")
