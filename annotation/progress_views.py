"""The staff page that shows how far a project has got and who is doing the work."""

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, render

from .models import Project
from .progress import project_annotator_stats, project_item_status_counts, project_recent_rankings


@login_required
def project_progress(request, project_id: int):
    """Items done / in progress / waiting, per-annotator figures and the latest rankings of one project."""
    # Signed-out visitors are sent to log in (login_required); annotators are refused outright.
    if not request.user.is_staff:
        raise PermissionDenied("This page is for staff only.")
    project = get_object_or_404(Project, pk=project_id)
    counts = project_item_status_counts(project=project)
    return render(
        request,
        "annotation/project_progress.html",
        {
            "project": project,
            "counts": counts,
            "done_percent": round(100 * counts.done / counts.total) if counts.total else 0,
            "annotators": project_annotator_stats(project=project),
            "recent_rankings": project_recent_rankings(project=project),
        },
    )
