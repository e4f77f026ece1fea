"""The reward-model versions a project's runs produce: evaluate, register (and promote), activate."""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from annotation.models import Project

from .diagnostics import version_flips
from .models import EvaluationSuite, RewardModel, SuiteResult, TrainingRun
from .runner import describe_exit, engine_command
from .runs import TrainingError
from .scoring_pass import scoring_pass_queue
from .selectors import reward_model_active
from .suites import SuiteFile, suite_arguments

log = logging.getLogger(__name__)


def reward_model_evaluate(
    *, artifact_path: str | Path, data_path: str | Path | None, suites: Sequence[SuiteFile] = ()
) -> dict[str, Any]:
    """A saved model's figures on a data file and on suites, through the engine's `evaluate` command."""
    arguments = ["--model", str(artifact_path)]
    if data_path is not None:
        arguments += ["--data", str(data_path)]
    command = engine_command(subcommand="evaluate", arguments=[*arguments, *suite_arguments(list(suites))])
    completed = subprocess.run(command, capture_output=True, text=True, cwd=settings.BASE_DIR, check=False)
    if completed.returncode != 0:
        raise TrainingError(
            f"evaluate {describe_exit(completed.returncode)}: {completed.stderr.strip()[-2000:]}"
        )
    for line in reversed(completed.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise TrainingError("evaluate printed no result.")


@dataclass
class _Comparison:
    """The active version's figures beside the new one's, and every reason not to promote the new one."""

    accuracy: float | None = None
    reasons: list[str] = field(default_factory=list)
    # Figures of the active version on suites it had none for, by suite id (stored with it).
    active_suites: dict[int, dict[str, Any]] = field(default_factory=dict)


def _compare_with_active(
    *,
    active: RewardModel,
    result: dict[str, Any],
    accuracy: float | None,
    eval_path: Path | None,
    suites: Sequence[SuiteFile],
) -> _Comparison:
    """Score the active version where its figures are missing; a reason for each figure the new one loses.

    The rules: not worse on the project's evaluation split, and not worse on each suite that holds back
    promotion. The active version's suite figures are reused when it has them (a suite's file never
    changes); those it lacks are computed now, in the same `evaluate` as its split accuracy.
    """
    comparison = _Comparison()
    if eval_path is None or accuracy is None:
        comparison.reasons.append(
            "No evaluation pairs to compare with the active model; activate it by hand if wanted."
        )
    ruled = [f for f in suites if f.suite.holds_back_promotion]
    known = dict(SuiteResult.objects.filter(reward_model=active).values_list("suite_id", "pairwise_accuracy"))
    missing = [f for f in ruled if f.suite.pk not in known]
    split = eval_path if accuracy is not None else None
    if split is not None or missing:
        try:
            evaluated = reward_model_evaluate(
                artifact_path=active.artifact_path, data_path=split, suites=missing
            )
        except (TrainingError, OSError, ValueError) as exc:
            log.warning("Could not evaluate active model %s: %s", active, exc)
            evaluated = {}
        if split is not None:
            comparison.accuracy = evaluated.get("pairwise_accuracy")
        for f in missing:
            if f.engine_name in evaluated.get("suites", {}):
                comparison.active_suites[f.suite.pk] = evaluated["suites"][f.engine_name]
                known[f.suite.pk] = comparison.active_suites[f.suite.pk].get("pairwise_accuracy")
    if comparison.accuracy is not None and accuracy is not None and accuracy < comparison.accuracy:
        comparison.reasons.append(
            f"Pairwise accuracy {accuracy:.3f} is below the active v{active.version}'s "
            f"{comparison.accuracy:.3f} on the same evaluation split."
        )
    for f in ruled:
        mine = (result.get("suites") or {}).get(f.engine_name, {}).get("pairwise_accuracy")
        theirs = known.get(f.suite.pk)
        if mine is None:
            comparison.reasons.append(f"No accuracy on suite “{f.suite.name}”, which promotion requires.")
        elif theirs is not None and mine < theirs:
            comparison.reasons.append(
                f"Accuracy {mine:.3f} on suite “{f.suite.name}” is below the active "
                f"v{active.version}'s {theirs:.3f}."
            )
    return comparison


def _suite_results_save(*, reward_model: RewardModel, figures: dict[int, dict[str, Any]]) -> None:
    """Store a version's figures on each suite (by suite id), replacing any it had."""
    for suite_id, suite_figures in figures.items():
        SuiteResult.objects.update_or_create(
            reward_model=reward_model,
            suite_id=suite_id,
            defaults={
                "pairwise_accuracy": suite_figures.get("pairwise_accuracy"),
                "pairs": int(suite_figures.get("pairs") or 0),
                "figures": suite_figures,
            },
        )


def reward_model_register(
    *,
    run: TrainingRun,
    artifact_path: Path,
    eval_path: Path | None,
    suites: Sequence[SuiteFile] = (),
) -> RewardModel:
    """Record the run's model as the project's next version and promote it if it is at least as good.

    At least as good: on the project's evaluation split, and on every suite that holds back promotion.
    The version also records the held-out pairs whose order changed since the previous version.
    """
    result = run.result_metrics or {}
    held_out = result.get("eval") or {}
    accuracy = held_out.get("pairwise_accuracy") if held_out.get("pairs") else None
    active = reward_model_active(project=run.project)
    comparison = _Comparison()
    if active is not None:
        comparison = _compare_with_active(
            active=active, result=result, accuracy=accuracy, eval_path=eval_path, suites=suites
        )
    previous = RewardModel.objects.filter(project=run.project).order_by("-version").first()
    flips = {}
    if previous is not None:
        flips = version_flips(newer_directory=artifact_path, older_directory=previous.artifact_path) or {}
        if flips:
            flips["version"] = previous.version
    reported = result.get("suites") or {}
    own_suites = {f.suite.pk: reported[f.engine_name] for f in suites if f.engine_name in reported}
    reason = " ".join(comparison.reasons)
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
            compared_accuracy=comparison.accuracy,
            not_active_reason=reason,
            flips=flips,
        )
        # Suites deleted while the run trained have no row to hold figures any more.
        existing = set(EvaluationSuite.objects.filter(pk__in=own_suites).values_list("pk", flat=True))
        _suite_results_save(
            reward_model=reward_model, figures={k: v for k, v in own_suites.items() if k in existing}
        )
        if active is not None:
            _suite_results_save(
                reward_model=active,
                figures={k: v for k, v in comparison.active_suites.items() if k in existing},
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
        project = Project.objects.get(pk=reward_model.project_id)
        if project.work_order == Project.WorkOrder.MODEL:
            # The new version's scores drive who ranks what next: score the needy items (on commit).
            scoring_pass_queue(project=project)
    return reward_model
