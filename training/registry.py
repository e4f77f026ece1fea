"""The reward-model versions a project's runs produce: evaluate, register (and promote), activate."""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from annotation.models import Project

from .models import RewardModel, TrainingRun
from .runner import describe_exit, engine_command
from .runs import TrainingError
from .selectors import reward_model_active

log = logging.getLogger(__name__)


def reward_model_evaluate(*, artifact_path: str | Path, data_path: str | Path) -> dict[str, Any]:
    """Pairwise accuracy of a saved model on a data file, through the engine's `evaluate` command."""
    command = engine_command(
        subcommand="evaluate", arguments=["--model", str(artifact_path), "--data", str(data_path)]
    )
    completed = subprocess.run(command, capture_output=True, text=True, cwd=settings.BASE_DIR, check=False)
    if completed.returncode != 0:
        raise TrainingError(
            f"evaluate {describe_exit(completed.returncode)}: {completed.stderr.strip()[-2000:]}"
        )
    for line in reversed(completed.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise TrainingError("evaluate printed no result.")


def reward_model_register(*, run: TrainingRun, artifact_path: Path, eval_path: Path | None) -> RewardModel:
    """Record the run's model as the project's next version and promote it if it is at least as good."""
    result = run.result_metrics or {}
    held_out = result.get("eval") or {}
    accuracy = held_out.get("pairwise_accuracy") if held_out.get("pairs") else None
    active = reward_model_active(project=run.project)
    compared_accuracy = None
    reason = ""
    if active is not None:
        if eval_path is None or accuracy is None:
            reason = "No evaluation pairs to compare with the active model; activate it by hand if wanted."
        else:
            try:
                compared_accuracy = reward_model_evaluate(
                    artifact_path=active.artifact_path, data_path=eval_path
                )["pairwise_accuracy"]
            except (TrainingError, KeyError, OSError) as exc:
                log.warning("Could not evaluate active model %s: %s", active, exc)
            if compared_accuracy is not None and accuracy < compared_accuracy:
                reason = (
                    f"Pairwise accuracy {accuracy:.3f} is below the active v{active.version}'s "
                    f"{compared_accuracy:.3f} on the same evaluation split."
                )
    with transaction.atomic():
        project = Project.objects.select_for_update().get(pk=run.project_id)
        version = (RewardModel.objects.filter(project=project).aggregate(m=Max("version"))["m"] or 0) + 1
        reward_model = RewardModel.objects.create(
            project=project,
            version=version,
            training_run=run,
            artifact_path=str(artifact_path),
            base_model=str(run.arguments.get("base_model", "")),
            metrics=result,
            pairwise_accuracy=accuracy,
            eval_pairs=int(held_out.get("pairs") or 0),
            compared_with=active,
            compared_accuracy=compared_accuracy,
            not_active_reason=reason,
        )
        if reason:
            return reward_model
        current = reward_model_active(project=project)
        if current != active:
            reward_model.not_active_reason = (
                "The active model changed while this one was compared; activate by hand."
            )
            reward_model.save(update_fields=["not_active_reason"])
            return reward_model
        return reward_model_activate(reward_model=reward_model)


def reward_model_activate(*, reward_model: RewardModel) -> RewardModel:
    """Make this version the project's active model, atomically switching from the previous one."""
    with transaction.atomic():
        # Lock the project so that two activations of the same project take turns.
        Project.objects.select_for_update().get(pk=reward_model.project_id)
        RewardModel.objects.filter(project_id=reward_model.project_id, is_active=True).exclude(
            pk=reward_model.pk
        ).update(is_active=False)
        reward_model.is_active = True
        reward_model.activated_at = timezone.now()
        reward_model.not_active_reason = ""
        reward_model.save(update_fields=["is_active", "activated_at", "not_active_reason"])
    return reward_model
