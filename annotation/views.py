"""Server-rendered pages."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render

from .selectors import project_list_for_annotator


@login_required
def home(request):
    """Staff go to the staff home (the root URLconf mounts it); annotators see the projects to work on."""
    if request.user.is_staff and "annotate" not in request.GET:
        return redirect("staff-home")
    projects = project_list_for_annotator(user=request.user)
    return render(request, "annotation/home.html", {"projects": projects})
