"""Staff pages of a project: its progress, and its data (agreement, export downloads, snapshots).

Each page asks for the permission the API asks for the same data (annotation/api/), so a page never
shows what the API would refuse.
"""

from django.contrib.auth.decorators import permission_required
from django.shortcuts import get_object_or_404, render

from common.pages import staff_only

from .exports.filters import CONTAINERS, FORMATS
from .exports.reading import annotator_pseudonym
from .figures import agreement_figures_for_display
from .models import ExportSnapshot, Project, Ranking
from .progress import project_annotator_stats, project_item_status_counts, project_recent_rankings
from .work_order import disputed_items_list

SNAPSHOTS_SHOWN = 50


@staff_only
@permission_required("annotation.view_ranking", raise_exception=True)
def project_progress(request, project_id: int):
    """Items done / in progress / waiting, per-annotator figures and the latest rankings of one project.

    Its annotators' figures and rankings, comments included, are what the API's agreement and
    annotators' figures read: view_ranking.
    """
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


@staff_only
@permission_required("annotation.view_ranking", raise_exception=True)
def project_data(request, project_id: int):
    """Agreement between annotators, one download button per export format, and the latest snapshots.

    Agreement and exports ask view_ranking, as the API does; the snapshots are shown only to those who
    also hold view_exportsnapshot (the API's snapshot list and download ask it).
    """
    project = get_object_or_404(Project, pk=project_id)
    shown = agreement_figures_for_display(project=project)
    figures = shown.figures or {}
    # Exports carry pseudonyms; staff may see who is behind them on this page.
    people = (
        Ranking.objects.filter(item__project=project, annotator__isnull=False)
        .values_list("annotator_id", "annotator__username")
        .distinct()
    )
    names = {annotator_pseudonym(user_id): username for user_id, username in people}
    annotators = [
        {**row, "username": names.get(row["annotator"], "")} for row in figures.get("annotators", [])
    ]
    snapshots = ExportSnapshot.objects.none()
    if request.user.has_perm("annotation.view_exportsnapshot"):
        snapshots = ExportSnapshot.objects.filter(project=project).order_by("-created_at", "-id")
    return render(
        request,
        "annotation/project_data.html",
        {
            "project": project,
            "figures": figures,
            "annotators": annotators,
            "figures_computed_at": shown.computed_at,
            "figures_stale": shown.stale,
            "formats": [(value, label) for value, label in ExportSnapshot.Format.choices if value in FORMATS],
            "containers": CONTAINERS,
            "snapshots": snapshots[:SNAPSHOTS_SHOWN],
        },
    )


@staff_only
@permission_required("annotation.view_ranking", raise_exception=True)
def project_disputes(request, project_id: int):
    """Items whose annotators split or that the model disputes: answers, each ranking, the model's rewards.

    Asks view_ranking, for the rankings; the model's rewards show only with training.view_rewardmodel
    (what scoring over the API asks).
    """
    project = get_object_or_404(Project, pk=project_id)
    return render(
        request,
        "annotation/project_disputes.html",
        {"project": project, "disputes": disputed_items_list(project=project)},
    )
