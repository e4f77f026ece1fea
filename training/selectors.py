"""Reads for the training pages: runs, versions, and what the progress poll returns."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.utils.safestring import SafeString

from annotation.models import Project

from .charts import line_chart_svg
from .models import RewardModel, TrainingRun


def training_runs_for_project(*, project: Project) -> QuerySet[TrainingRun]:
    """The project's runs, newest first, with the model each produced."""
    return (
        TrainingRun.objects.filter(project=project)
        .select_related("reward_model", "created_by", "export_snapshot")
        .order_by("-created_at", "-id")
    )


def reward_models_for_project(*, project: Project) -> QuerySet[RewardModel]:
    """The project's model versions, newest first."""
    return RewardModel.objects.filter(project=project).select_related("training_run").order_by("-version")


def reward_model_active(*, project: Project | int) -> RewardModel | None:
    """The project's active model version, if it has one (a constraint allows at most one)."""
    return RewardModel.objects.filter(project=project, is_active=True).first()


def loss_chart(*, run: TrainingRun) -> SafeString:
    """The run's training loss by step, as SVG."""
    return line_chart_svg(
        points=[(step, loss) for step, loss in run.loss_history],
        title=f"Training loss of run #{run.pk}",
        x_label="step",
        y_label="loss",
        integer_x=True,
    )


def accuracy_chart(*, project: Project) -> SafeString:
    """Held-out pairwise accuracy of every version, the active one ringed, as SVG."""
    versions = list(
        RewardModel.objects.filter(project=project, pairwise_accuracy__isnull=False)
        .order_by("version")
        .values_list("version", "pairwise_accuracy", "is_active")
    )
    return line_chart_svg(
        points=[(version, accuracy) for version, accuracy, _ in versions],
        highlight=[(version, accuracy) for version, accuracy, active in versions if active],
        title="Pairwise accuracy on the evaluation split, by version",
        x_label="version",
        y_label="accuracy",
        y_range=(0.0, 1.0),
        markers=True,
        integer_x=True,
    )


def training_run_progress(*, run: TrainingRun) -> dict[str, Any]:
    """What the runs page polls: status, progress, the latest loss, the log tail and the loss chart."""
    last_loss = run.loss_history[-1][1] if run.loss_history else None
    return {
        "id": run.pk,
        "status": run.status,
        "status_label": run.get_status_display(),
        "is_active": run.is_active,
        "step": run.step,
        "total_steps": run.total_steps,
        "epoch": run.epoch,
        "percent": run.progress_percent,
        "loss": last_loss,
        "eval_accuracy": (run.eval_metrics or {}).get("pairwise_accuracy"),
        "heartbeat_at": run.heartbeat_at.isoformat() if run.heartbeat_at else None,
        "cancel_requested": run.cancel_requested_at is not None,
        "log_tail": run.log_tail,
        "error": run.error,
        "loss_svg": str(loss_chart(run=run)),
    }
