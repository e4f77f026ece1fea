"""Celery tasks of the annotation app: another way in to its services, on the default queue."""

from celery import shared_task

from .exports.snapshots import export_snapshot_create, export_snapshots_write_all
from .figures import agreement_figures_refresh, agreement_figures_refresh_all
from .imports import import_job_run, import_jobs_reap_stale
from .models import ImportJob, Project


@shared_task(name="annotation.tasks.export_snapshots_write")
def export_snapshots_write() -> dict[str, int]:
    """Snapshot every active project in every format where its data changed, prune, refresh agreement."""
    written = export_snapshots_write_all()
    return {"written": len(written), "agreement_refreshed": agreement_figures_refresh_all()}


@shared_task(name="annotation.tasks.export_snapshot_write")
def export_snapshot_write(
    project_id: int, format: str, filters: dict | None = None, container: str = "jsonl"
) -> int | None:
    """Write one snapshot now (even if nothing changed), in that file type, and return its id."""
    project = Project.objects.get(pk=project_id)
    snapshot = export_snapshot_create(
        project=project, format=format, filters=filters, force=True, container=container
    )
    return snapshot.pk if snapshot else None


@shared_task(name="annotation.tasks.agreement_figures_write")
def agreement_figures_write(project_id: int) -> str:
    """Work out a project's agreement figures again if its data changed."""
    figures = agreement_figures_refresh(project=Project.objects.get(pk=project_id))
    return figures.computed_at.isoformat()


@shared_task(name="annotation.tasks.run_import_job")
def run_import_job(job_id: int) -> str:
    """Import one queued job's stored file; a job already claimed (a redelivered message) is left alone."""
    return import_job_run(job=ImportJob.objects.select_related("project").get(pk=job_id)).status


@shared_task(name="annotation.tasks.reap_stale_import_jobs", ignore_result=True)
def reap_stale_import_jobs() -> list[int]:
    """Beat, every minute: fail import jobs whose worker stopped sending heartbeats or that no worker took."""
    return import_jobs_reap_stale()
