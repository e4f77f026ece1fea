"""The annotator's ranking page: a server-rendered shell whose script drives the work API."""

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import ensure_csrf_cookie

from .markdown import render_markdown
from .models import Project
from .revisions import rankings_mine


def _url_template(name: str) -> str:
    # The script fills in the assignment id it gets from the API; 0 is a stand-in no real row has.
    return reverse(name, args=[0]).replace("/0/", "/{id}/")


@login_required
@ensure_csrf_cookie
def rank(request, project_id: int):
    """The page where an annotator ranks one item after another in a project."""
    project = get_object_or_404(Project, pk=project_id, is_active=True)
    settings_for_script = {
        "project_id": project.pk,
        "allow_ties": project.allow_ties,
        "flag_labels": list(project.flag_labels or []),
        "next_url": reverse("assignment-next", args=[project.pk]),
        "progress_url": reverse("project-progress-api", args=[project.pk]),
        "submit_url_template": _url_template("assignment-submit"),
        "skip_url_template": _url_template("assignment-skip"),
        "mine_url": reverse("my-rankings", args=[project.pk]),
    }
    revise = request.GET.get("revise")
    if revise is not None:
        # Changing one of my rankings: the page loads it instead of the next item and sends it back.
        if not revise.isdigit() or len(revise) > 18:
            raise Http404("No such ranking.")
        settings_for_script["reopen_url"] = reverse("ranking-reopen", args=[int(revise)])
        settings_for_script["revise_url"] = reverse("ranking-revise", args=[int(revise)])
    return render(
        request,
        "annotation/rank.html",
        {
            "project": project,
            "guidelines_html": render_markdown(project.guidelines),
            "rank_settings": settings_for_script,
        },
    )


@login_required
def my_rankings(request, project_id: int):
    """The annotator's latest rankings in the project, each with a link to change it while it may be."""
    project = get_object_or_404(Project, pk=project_id, is_active=True)
    return render(
        request,
        "annotation/my_rankings.html",
        {
            "project": project,
            "mine": rankings_mine(annotator=request.user, project=project),
            "now": timezone.now(),
        },
    )
