"""Snapshots: exports written to storage by the hourly task (or on request), recorded, and pruned.

A snapshot is written only when the project's data changed since the latest one of the same format,
filters and file type; the file appears under its final name only once complete.
"""

import hashlib
import json
import os
import tempfile
import uuid
from collections.abc import Iterable
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Count, Max, Q
from django.utils import timezone

from ..models import AnnotatorExclusion, Answer, ExportSnapshot, Item, Project, Ranking, RankingRevision
from .containers import export_stream
from .filters import FORMATS, ExportFilters, check_format, container_for
from .reading import ExportProgress


def export_source_fingerprint(*, project: Project) -> str:
    """What the project's data looks like now: any ranking, item or answer added or removed, or revised."""
    items = Item.objects.filter(project=project).aggregate(n=Count("id"), last=Max("id"))
    answers = Answer.objects.filter(project=project).aggregate(n=Count("id"), last=Max("id"))
    rankings = Ranking.objects.filter(item__project=project).aggregate(n=Count("id"), last=Max("id"))
    fingerprint = ":".join(str(d[k] or 0) for d in (items, answers, rankings) for k in ("n", "last"))
    # A ranking changed by its annotator (annotation.revisions) leaves a revision row behind; named only
    # when there is one, so that the fingerprints of projects without any stay as they were.
    revised = RankingRevision.objects.filter(ranking__item__project=project).aggregate(last=Max("id"))["last"]
    if revised:
        fingerprint += f":r{revised}"
    # Gold items and excluded annotators are left out of exports: marking or excluding one changes them.
    gold = (
        Item.objects.filter(project=project, gold_order__isnull=False)
        .order_by("id")
        .values_list("id", flat=True)
    )
    excluded = (
        AnnotatorExclusion.objects.filter(project=project)
        .order_by("annotator_id")
        .values_list("annotator_id", flat=True)
    )
    for tag, ids in (("g", list(gold)), ("x", list(excluded))):
        if ids:
            fingerprint += f":{tag}{hashlib.sha256(repr(ids).encode()).hexdigest()[:12]}"
    return fingerprint


def export_snapshot_latest(
    *, project: Project, format: str, filters: dict | None = None, container: str = "jsonl"
) -> ExportSnapshot | None:
    """The newest snapshot of that format, those filters and that container (file type), if any."""
    normalized = ExportFilters.from_mapping(filters).as_dict()
    return (
        ExportSnapshot.objects.filter(
            project=project,
            format=format,
            container=container_for(container=container),
            filters=normalized,
        )
        .order_by("-created_at", "-id")
        .first()
    )


def export_snapshot_create(
    *,
    project: Project,
    format: str,
    filters: dict | None = None,
    force: bool = False,
    container: str = "jsonl",
    source_fingerprint: str | None = None,
) -> ExportSnapshot | None:
    """Write an export to storage and record it; None when nothing changed since the latest such snapshot.

    `source_fingerprint` is the project's export_source_fingerprint when the caller has just taken it (the
    hourly run takes it once for all formats); None works it out here.
    The file is written under a temporary name and renamed (or uploaded) only once complete, so a crash
    never leaves a half file that looks like a snapshot.
    """
    check_format(format)
    container = container_for(container=container)
    parsed = ExportFilters.from_mapping(filters)
    if source_fingerprint is None:
        source_fingerprint = export_source_fingerprint(project=project)
    latest = export_snapshot_latest(project=project, format=format, filters=filters, container=container)
    if not force and latest is not None and latest.source_fingerprint == source_fingerprint:
        return None

    now = timezone.now()
    name = f"exports/{now:%Y/%m}/{project.pk}-{format}-{now:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:8]}.{container}"
    progress = ExportProgress()
    digest = hashlib.sha256()
    chunks = export_stream(
        project=project, format=format, container=container, filters=parsed, progress=progress
    )
    name = _storage_write_atomically(name, chunks, digest)
    try:
        with transaction.atomic():
            return ExportSnapshot.objects.create(
                project=project,
                format=format,
                container=container,
                filters=parsed.as_dict(),
                file=name,
                row_count=progress.rows,
                item_count=progress.items,
                sha256=digest.hexdigest(),
                source_fingerprint=source_fingerprint,
            )
    except BaseException:
        default_storage.delete(name)
        raise


def _storage_write_atomically(name: str, chunks: Iterable[bytes], digest) -> str:
    try:
        final = Path(default_storage.path(name))
    except NotImplementedError:
        final = None
    if final is None:
        # Remote storage: spool locally, then one upload; the object appears only when complete.
        with tempfile.TemporaryFile() as spool:
            for chunk in chunks:
                digest.update(chunk)
                spool.write(chunk)
            spool.seek(0)
            return default_storage.save(name, File(spool, name=os.path.basename(name)))
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.with_name(f".{final.name}.partial")
    try:
        with open(partial, "wb") as out:
            for chunk in chunks:
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, final)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return name


def export_snapshot_prune(*, keep: int | None = None, project: Project | None = None) -> int:
    """Keep the newest `keep` (EXPORT_SNAPSHOT_RETENTION) snapshots per format, filters and container.

    Snapshots that other rows point to (a training run's data, say) are kept, whatever their age.
    """
    keep = settings.EXPORT_SNAPSHOT_RETENTION if keep is None else keep
    in_use = Q(pk__in=[])
    for relation in ExportSnapshot._meta.related_objects:
        in_use |= Q(**{f"{relation.name}__isnull": False})
    snapshots = ExportSnapshot.objects.exclude(in_use).order_by(
        "project_id", "format", "container", "-created_at", "-id"
    )
    if project is not None:
        snapshots = snapshots.filter(project=project)
    seen: dict[tuple, int] = {}
    doomed: list[int] = []
    for pk, project_id, format, container, filters in snapshots.values_list(
        "pk", "project_id", "format", "container", "filters"
    ).iterator(chunk_size=2000):
        # Per container too, as export_snapshot_latest looks: forced parquet files must not push out the
        # scheduled jsonl one, or the next run would write that again.
        key = (project_id, format, container, json.dumps(filters, sort_keys=True))
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > keep:
            doomed.append(pk)
    # Their files go once this commits (`annotation.stored_files`).
    ExportSnapshot.objects.filter(pk__in=doomed).delete()
    return len(doomed)


def export_snapshots_write_all(*, formats: Iterable[str] | None = None) -> list[ExportSnapshot]:
    """Snapshot every active project in every format (default filters) where something changed, then prune."""
    written = []
    for project in Project.objects.filter(is_active=True).order_by("pk"):
        # Taken once, before any file is written: whatever changes meanwhile shows in the next run.
        source_fingerprint = export_source_fingerprint(project=project)
        for format in formats or FORMATS:
            snapshot = export_snapshot_create(
                project=project, format=format, source_fingerprint=source_fingerprint
            )
            if snapshot is not None:
                written.append(snapshot)
    export_snapshot_prune()
    return written
