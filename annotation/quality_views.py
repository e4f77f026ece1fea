"""The staff page of annotators' figures in a project, with the reversible exclusion of one of them."""

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import permission_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from common.pages import staff_only

from .annotator_quality import annotator_exclude, annotator_figures, annotator_include
from .models import Project


@staff_only
@permission_required("annotation.view_ranking", raise_exception=True)
def project_annotators(request, project_id: int):
    """Each annotator's τ against gold and the others, speed, untouched share and skips; outliers marked."""
    project = get_object_or_404(Project, pk=project_id)
    return render(
        request,
        "annotation/project_annotators.html",
        {"project": project, "figures": annotator_figures(project=project)},
    )


@staff_only
@permission_required("annotation.change_project", raise_exception=True)
@require_POST
def project_annotator_exclusion(request, project_id: int, annotator_id: int):
    """Exclude the annotator's rankings from exports and training, or (`include=1`) count them again."""
    project = get_object_or_404(Project, pk=project_id)
    annotator = get_object_or_404(get_user_model(), pk=annotator_id)
    if request.POST.get("include") == "1":
        annotator_include(project=project, annotator=annotator)
        messages.success(request, f"{annotator}'s rankings count again in exports and training.")
    else:
        annotator_exclude(project=project, annotator=annotator, by=request.user)
        messages.success(
            request, f"{annotator}'s rankings are left out of exports and training from now on (reversible)."
        )
    return redirect("project-annotators", project_id=project.pk)
