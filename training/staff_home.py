"""The staff home: every project with its progress, agreement and active model, and creating a project.

It lives on the training side because it shows both apps' state (annotation never imports training);
the root URLconf mounts it, and annotation's home sends staff here by the URL's name.
"""

from dataclasses import dataclass

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.safestring import SafeString

from annotation.markdown import render_markdown
from annotation.models import AgreementFigures, Project
from annotation.progress import project_progress_totals
from annotation.projects import ProjectInvalid, project_save
from common.pages import staff_only

from .models import RewardModel


@dataclass(frozen=True)
class ProjectLine:
    """One project as the staff home shows it."""

    project: Project
    done: int
    wanted: int
    mean_tau_b: float | None
    agreement_items: int | None
    active_model: RewardModel | None

    @property
    def percent(self) -> int:
        """Share of the rankings wanted that are in, in whole percent."""
        return min(100, round(100 * self.done / self.wanted)) if self.wanted else 0


def _project_lines() -> list[ProjectLine]:
    projects = list(Project.objects.order_by("-is_active", "name"))
    figures = {f.project_id: f.figures for f in AgreementFigures.objects.filter(project__in=projects)}
    active = {m.project_id: m for m in RewardModel.objects.filter(project__in=projects, is_active=True)}
    lines = []
    for project in projects:
        done, wanted = project_progress_totals(project=project)
        kept = figures.get(project.pk) or {}
        lines.append(
            ProjectLine(
                project=project,
                done=done,
                wanted=wanted,
                mean_tau_b=kept.get("mean_tau_b"),
                agreement_items=kept.get("items"),
                active_model=active.get(project.pk),
            )
        )
    return lines


class GuidelinesForm(forms.Form):
    """A project's name and guidelines (Markdown), as the staff home creates and edits them."""

    name = forms.CharField(max_length=200)
    guidelines = forms.CharField(widget=forms.Textarea(attrs={"rows": 14}), required=False)


def _save(request, project: Project, form: GuidelinesForm):
    project.name = form.cleaned_data["name"]
    project.guidelines = form.cleaned_data["guidelines"]
    try:
        return project_save(project=project)
    except ProjectInvalid as exc:
        for field, message in exc.errors.items():
            form.add_error(field if field in form.fields else None, message)
        return None


@staff_only
@permission_required("annotation.view_project", raise_exception=True)
def staff_home(request):
    """Projects with progress, agreement and the active model version, and a form to create one."""
    form = GuidelinesForm(request.POST or None)
    if request.method == "POST":
        if not request.user.has_perm("annotation.add_project"):
            messages.error(request, "You may not create projects.")
        elif form.is_valid() and (project := _save(request, Project(), form)):
            messages.success(request, f"Created project “{project}”.")
            return redirect("staff-project-guidelines", project_id=project.pk)
    return render(request, "training/staff_home.html", {"lines": _project_lines(), "form": form})


@staff_only
@permission_required("annotation.change_project", raise_exception=True)
def project_guidelines(request, project_id: int):
    """Edit a project's guidelines in Markdown, with a preview rendered as annotators will see it."""
    project = get_object_or_404(Project, pk=project_id)
    form = GuidelinesForm(
        request.POST or None, initial={"name": project.name, "guidelines": project.guidelines}
    )
    preview: SafeString | None = None
    if request.method == "POST" and form.is_valid():
        if "preview" in request.POST:
            preview = SafeString(render_markdown(form.cleaned_data["guidelines"]))
        elif _save(request, project, form):
            messages.success(request, "Guidelines saved.")
            return redirect("staff-project-guidelines", project_id=project.pk)
    else:
        preview = SafeString(render_markdown(project.guidelines))
    return render(
        request,
        "training/staff_project_guidelines.html",
        {"project": project, "form": form, "preview": preview},
    )
