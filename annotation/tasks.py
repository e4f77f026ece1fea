"""Celery tasks of the annotation app: another way in to its services, on the default queue."""

from celery import shared_task

from .exports import export_snapshot_create, export_snapshots_write_all
from .models import Project


@shared_task(name="annotation.tasks.export_snapshots_write")
def export_snapshots_write() -> dict[str, int]:
    """Snapshot every active project in every format where its data changed, then prune old snapshots."""
    written = export_snapshots_write_all()
    return {"written": len(written)}


@shared_task(name="annotation.tasks.export_snapshot_write")
def export_snapshot_write(project_id: int, format: str, filters: dict | None = None) -> int | None:
    """Write one snapshot now (even if nothing changed) and return its id."""
    project = Project.objects.get(pk=project_id)
    snapshot = export_snapshot_create(project=project, format=format, filters=filters, force=True)
    return snapshot.pk if snapshot else None
