"""Staff pages for training runs and reward-model versions: thin views over the services and selectors.

Each page asks for the permission the API asks for the same data (training/api.py, api_suites.py); a part
of a page that shows another kind of data is left out for those without that one's permission.
"""

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.db.models import OuterRef, Subquery
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from annotation.models import Project
from common.api import MAX_ID
from common.errors import DomainError
from common.pages import staff_only

from . import comparison, registry, runs, scoring_pass, suites
from .api import reward_model_archive_response
from .models import EvaluationSuite, RewardModel, TrainingRun
from .selectors import (
    accuracy_chart,
    loss_chart,
    reward_models_for_project,
    training_run_progress,
    training_runs_for_project,
)

RUNS_SHOWN = 50


@staff_only
@permission_required("training.view_trainingrun", raise_exception=True)
def index(request):
    """Every project with its latest run and its active version (the version with view_rewardmodel only)."""
    latest = TrainingRun.objects.filter(project=OuterRef("pk")).order_by("-created_at", "-id")
    active = RewardModel.objects.filter(project=OuterRef("pk"), is_active=True)
    projects = Project.objects.annotate(
        latest_run_status=Subquery(latest.values("status")[:1]),
        latest_run_id=Subquery(latest.values("pk")[:1]),
        active_version=Subquery(active.values("version")[:1]),
        active_accuracy=Subquery(active.values("pairwise_accuracy")[:1]),
    )
    return render(request, "training/index.html", {"projects": projects})


@staff_only
@permission_required("training.view_trainingrun", raise_exception=True)
def project_runs(request, project_id: int):
    """A project's runs, the selected (or latest) run's live progress, loss curve and log tail.

    The versions' accuracy chart and the version each run produced show only with view_rewardmodel.
    """
    project = get_object_or_404(Project, pk=project_id)
    project_runs = training_runs_for_project(project=project)
    runs = list(project_runs[:RUNS_SHOWN])
    selected = runs[0] if runs else None
    if run_id := request.GET.get("run"):
        # Through the selector, so the chosen run comes with the rows the page shows beside it. Only ASCII
        # digits ("²".isdigit() is true too, and int() refuses it), and no more than a bigint holds.
        if not (run_id.isascii() and run_id.isdigit() and len(run_id) <= len(str(MAX_ID))):
            raise Http404("No such run.")
        selected = get_object_or_404(project_runs, pk=min(int(run_id), MAX_ID))
    context = {
        "project": project,
        "runs": runs,
        "selected": selected,
        "loss_svg": loss_chart(run=selected) if selected else "",
        "accuracy_svg": accuracy_chart(project=project)
        if request.user.has_perm("training.view_rewardmodel")
        else "",
        "can_retry": selected is not None
        and selected.status in (TrainingRun.Status.FAILED, TrainingRun.Status.CANCELLED),
    }
    return render(request, "training/project_runs.html", context)


@staff_only
@permission_required("training.view_trainingrun", raise_exception=True)
def run_progress(request, run_id: int):
    """JSON the runs page polls while a run is queued or running."""
    run = get_object_or_404(TrainingRun, pk=run_id)
    return JsonResponse(training_run_progress(run=run))


def _back_to_runs(project_id: int, run_id: int | None = None):
    response = redirect("training:project-runs", project_id=project_id)
    if run_id:
        response["Location"] += f"?run={run_id}"
    return response


@staff_only
@permission_required("training.add_trainingrun", raise_exception=True)
@require_POST
def project_retrain(request, project_id: int):
    """The "Retrain now" button."""
    project = get_object_or_404(Project, pk=project_id)
    try:
        run = runs.training_run_create(
            project=project, trigger=TrainingRun.Trigger.ADMIN, created_by=request.user
        )
    except DomainError as exc:
        messages.error(request, str(exc))
        return _back_to_runs(project.pk)
    messages.success(request, f"Queued training run #{run.pk}.")
    return _back_to_runs(project.pk, run.pk)


@staff_only
@permission_required("training.change_trainingrun", raise_exception=True)
@require_POST
def run_cancel(request, run_id: int):
    """The cancel button of a queued or running run."""
    run = get_object_or_404(TrainingRun, pk=run_id)
    try:
        run = runs.training_run_cancel(run=run)
    except DomainError as exc:
        messages.error(request, str(exc))
    else:
        if run.status == TrainingRun.Status.CANCELLED:
            messages.success(request, f"Run #{run.pk} cancelled.")
        else:
            messages.info(request, f"Run #{run.pk}: stopping the training process.")
    return _back_to_runs(run.project_id, run.pk)


@staff_only
@permission_required("training.add_trainingrun", raise_exception=True)
@require_POST
def run_retry(request, run_id: int):
    """The retry button of a failed or cancelled run."""
    run = get_object_or_404(TrainingRun, pk=run_id)
    try:
        new_run = runs.training_run_retry(run=run, created_by=request.user)
    except DomainError as exc:
        messages.error(request, str(exc))
        return _back_to_runs(run.project_id, run.pk)
    messages.success(request, f"Queued run #{new_run.pk}, a retry of #{run.pk}.")
    return _back_to_runs(run.project_id, new_run.pk)


@staff_only
@permission_required("training.view_rewardmodel", raise_exception=True)
def project_models(request, project_id: int):
    """A project's model versions with their figures, per-suite accuracy, activation and download.

    The per-suite tables show only with view_evaluationsuite (the suites API's figures ask it).
    """
    project = get_object_or_404(Project, pk=project_id)
    versions = list(reward_models_for_project(project=project))
    table_versions = comparison.versions_for_tables(project=project)
    context = {
        "project": project,
        "reward_models": [(v, comparison.version_figures(v)) for v in versions],
        "accuracy_svg": comparison.accuracy_by_version_chart(project=project),
        "table_versions": table_versions,
        "suite_tables": comparison.suite_tables(project=project, versions=table_versions)
        if request.user.has_perm("training.view_evaluationsuite")
        else [],
    }
    return render(request, "training/project_models.html", context)


def _version_chosen(request, name: str, versions: list[RewardModel], default: RewardModel) -> RewardModel:
    """The version the query string names by number (`?a=3`), or `default`; 404 for one that is not there."""
    value = request.GET.get(name)
    if value is None:
        return default
    by_number = {str(v.version): v for v in versions}
    if value not in by_number:
        raise Http404(f"No version {value[:20]} in this project.")
    return by_number[value]


@staff_only
@permission_required("training.view_rewardmodel", raise_exception=True)
def versions_compare(request, project_id: int):
    """Two versions side by side on every figure, with plots and the pairs whose order changed.

    The suites' section shows only with view_evaluationsuite, as on the versions page.
    """
    project = get_object_or_404(Project, pk=project_id)
    versions = list(comparison.versions_of_project(project=project))
    if not versions:
        messages.info(request, "No versions to compare yet: a successful run registers one.")
        return redirect("training:project-models", project_id=project.pk)
    newest = versions[0]
    a = _version_chosen(request, "a", versions, versions[1] if len(versions) > 1 else newest)
    b = _version_chosen(request, "b", versions, newest)
    if a.version > b.version:
        a, b = b, a
    context = {
        "project": project,
        "versions": versions,
        **comparison.versions_compare(project=project, a=a, b=b),
    }
    return render(request, "training/versions_compare.html", context)


@staff_only
@permission_required("training.view_evaluationsuite", raise_exception=True)
def project_suites(request, project_id: int):
    """A project's evaluation suites: upload, the promotion rule of each, delete."""
    project = get_object_or_404(Project, pk=project_id)
    context = {
        "project": project,
        "suites": EvaluationSuite.objects.filter(project=project).select_related("created_by"),
        "max_megabytes": suites.SUITE_MAX_BYTES // 2**20,
    }
    return render(request, "training/project_suites.html", context)


@staff_only
@permission_required("training.add_evaluationsuite", raise_exception=True)
@require_POST
def suite_upload(request, project_id: int):
    """The upload form of the suites page."""
    project = get_object_or_404(Project, pk=project_id)
    upload = request.FILES.get("file")
    if upload is None:
        messages.error(request, "Choose a file to upload.")
        return redirect("training:project-suites", project_id=project.pk)
    try:
        suite = suites.evaluation_suite_create(
            project=project,
            upload=upload,
            name=request.POST.get("name") or upload.name,
            holds_back_promotion=request.POST.get("holds_back_promotion") == "on",
            created_by=request.user,
        )
    except DomainError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request,
            f"Suite “{suite.name}”: {suite.pairs} pairs in {suite.items} items. Every new version is "
            "evaluated on it.",
        )
    return redirect("training:project-suites", project_id=project.pk)


@staff_only
@permission_required("training.change_evaluationsuite", raise_exception=True)
@require_POST
def suite_rule(request, suite_id: int):
    """Turn a suite's promotion rule on or off."""
    suite = get_object_or_404(EvaluationSuite, pk=suite_id)
    suites.evaluation_suite_update(suite=suite, holds_back_promotion=request.POST.get("holds_back") == "1")
    return redirect("training:project-suites", project_id=suite.project_id)


@staff_only
@permission_required("training.delete_evaluationsuite", raise_exception=True)
@require_POST
def suite_delete(request, suite_id: int):
    """Delete a suite with its figures."""
    suite = get_object_or_404(EvaluationSuite, pk=suite_id)
    project_id, name = suite.project_id, suite.name
    suites.evaluation_suite_delete(suite=suite)
    messages.success(request, f"Suite “{name}” deleted.")
    return redirect("training:project-suites", project_id=project_id)


@staff_only
@permission_required("training.change_rewardmodel", raise_exception=True)
@require_POST
def model_activate(request, model_id: int):
    """Make a version the project's active model, whatever its metrics."""
    reward_model = registry.reward_model_activate(reward_model=get_object_or_404(RewardModel, pk=model_id))
    messages.success(request, f"Version {reward_model.version} is now the active model.")
    return redirect("training:project-models", project_id=reward_model.project_id)


@staff_only
@permission_required("training.view_rewardmodel", raise_exception=True)
def model_download(request, model_id: int):
    """The version's directory as a .tar.gz archive."""
    return reward_model_archive_response(get_object_or_404(RewardModel, pk=model_id))


@staff_only
@permission_required("training.view_rewardmodel", raise_exception=True)
def project_loop(request, project_id: int):
    """Model in the loop: the work order, the last scoring pass, informativeness, accuracy vs rankings.

    All of it is the versions' doing, so it asks view_rewardmodel; the link to the disputed items shows
    only with annotation.view_ranking, which that page asks.
    """
    project = get_object_or_404(Project, pk=project_id)
    items = project.items
    context = {
        "project": project,
        "last_pass": scoring_pass.scoring_pass_latest(project=project),
        "pending_pass": scoring_pass.ScoringPass.objects.filter(
            project=project, status__in=scoring_pass.ScoringPass.ACTIVE_STATUSES
        ).first(),
        "versions": scoring_pass.accuracy_by_rankings(project=project),
        "disputed": items.exclude(disputed_reason="").count(),
        "unscored": items.filter(scored_version__isnull=True).count(),
    }
    return render(request, "training/project_loop.html", context)
