"""Writing projects: every rule a project's settings keep, checked in one place for the admin and the API.

A project's `training_arguments` are read by the scheduled retrain long after they were saved; a typo
saved today (`{"epoch": 3}`) would fail every retrain of the project later, so it is refused here, where
it enters, with the field named. The training side maps these names onto the engine's flags.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from django.db import transaction

from common.errors import Invalid

from .models import Project
from .work_order import needy_priorities_restore

# What a project (or one run) may set for training, and the type of each; the training side gives each
# engine option its flag (`training.runs.ENGINE_FLAGS`); `eval_fraction` is read by the Django side.
TRAINING_ARGUMENTS: dict[str, type] = {
    "base_model": str,
    "epochs": int,
    "lr": float,
    "max_length": int,
    "batch_tokens": int,
    "seed": int,
    "eval_fraction": float,
    # LoRA adapters instead of training every weight (rank 0: off), and the modules they adapt.
    "lora_r": int,
    "lora_alpha": float,
    "lora_target_modules": str,
    "center_rewards_coefficient": float,
    # Continue from the project's active version rather than from the base model (the training side
    # resolves it when the run starts; with no active version the run starts from the base model).
    "init_from_active": bool,
}
# Inclusive bounds of the numbers (lr, eval_fraction and the float options are checked apart).
_INT_RANGES = {
    "epochs": (1, 10_000),
    "max_length": (8, 1 << 20),
    "batch_tokens": (1, 1 << 30),
    "seed": (0, 2**32 - 1),
    "lora_r": (0, 4096),
}
# Module names as PEFT matches them: comma-separated names ("q_proj,v_proj"), or "all-linear".
_MODULE_NAMES = re.compile(r"[A-Za-z0-9_.]+(,[A-Za-z0-9_.]+)*")
MAX_BASE_MODEL = 1000
MAX_FLAG_LABELS = 50
MAX_FLAG_LABEL = 100
PROJECT_FIELDS = (
    "name",
    "guidelines",
    "rankings_per_item",
    "allow_ties",
    "flag_labels",
    "is_active",
    "retrain_min_new_rankings",
    "training_arguments",
    "work_order",
    "max_rankings_per_item",
    "revision_window_hours",
    "gold_rate",
    "calibration_items",
)
MAX_RANKINGS_PER_ITEM = 1000
MAX_REVISION_WINDOW_HOURS = 24 * 366
MAX_CALIBRATION_ITEMS = 10_000


class TrainingArgumentsInvalid(Invalid):
    """Training arguments with an unknown name, a value of the wrong type or out of range."""


class ProjectInvalid(Invalid):
    """Project settings that break a rule; `errors` names each field and what is wrong with it."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors.items()))


def text_problem(value: Any) -> str | None:
    """What makes a text (or any text inside a JSON value) unstorable: a NUL or a lone surrogate."""
    if isinstance(value, str):
        if "\x00" in value:
            return "contains a NUL character, which the database cannot store"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "contains a lone surrogate (\\ud800-\\udfff), which is not text"
        return None
    if isinstance(value, Mapping):
        return next((p for item in value.items() for p in map(text_problem, item) if p), None)
    if isinstance(value, list | tuple):
        return next((p for p in map(text_problem, value) if p), None)
    return None


def training_arguments_validate(*, arguments: Any) -> dict[str, Any]:
    """The arguments with known names and values of the right type and range, or TrainingArgumentsInvalid."""
    if not isinstance(arguments, Mapping):
        raise TrainingArgumentsInvalid("Training arguments must be an object of option names to values.")
    clean: dict[str, Any] = {}
    for name, value in arguments.items():
        if name not in TRAINING_ARGUMENTS:
            known = ", ".join(sorted(TRAINING_ARGUMENTS))
            raise TrainingArgumentsInvalid(f"Unknown training argument {name!r}; known: {known}.")
        clean[name] = _training_argument(name, value)
    return clean


def _training_argument(name: str, value: Any) -> Any:
    kind = TRAINING_ARGUMENTS[name]
    if kind is bool:
        if not isinstance(value, bool):
            raise TrainingArgumentsInvalid(f"Training argument {name!r} must be true or false.")
        return value
    if name == "lora_target_modules":
        if not isinstance(value, str) or len(value) > MAX_BASE_MODEL:
            raise TrainingArgumentsInvalid(f"Training argument {name!r} must be a string.")
        if value != "all-linear" and not _MODULE_NAMES.fullmatch(value):
            raise TrainingArgumentsInvalid(
                f"{name} must be comma-separated module names (e.g. q_proj,v_proj) or all-linear."
            )
        return value
    if kind is str:
        if not isinstance(value, str) or not value.strip():
            raise TrainingArgumentsInvalid(f"Training argument {name!r} must be a non-empty string.")
        if problem := text_problem(value):
            raise TrainingArgumentsInvalid(f"Training argument {name!r} {problem}.")
        if len(value) > MAX_BASE_MODEL:
            raise TrainingArgumentsInvalid(f"Training argument {name!r} is longer than {MAX_BASE_MODEL}.")
        if value.startswith("-"):
            raise TrainingArgumentsInvalid(f"{name} must be a hub id or a path, not an option.")
        return value
    if kind is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise TrainingArgumentsInvalid(f"Training argument {name!r} must be a whole number.")
        low, high = _INT_RANGES[name]
        if not low <= value <= high:
            raise TrainingArgumentsInvalid(f"Training argument {name!r} must be from {low} to {high}.")
        return value
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise TrainingArgumentsInvalid(f"Training argument {name!r} must be a finite number.")
    if name == "eval_fraction" and not 0 < value < 1:
        raise TrainingArgumentsInvalid("eval_fraction must be between 0 and 1.")
    if name in ("lr", "lora_alpha") and not value > 0:
        raise TrainingArgumentsInvalid(f"{name} must be greater than 0.")
    if name == "center_rewards_coefficient" and value < 0:
        raise TrainingArgumentsInvalid("center_rewards_coefficient must be 0 or more.")
    return float(value)


def project_values_validate(*, values: Mapping[str, Any]) -> dict[str, Any]:
    """The project fields in `values`, checked against every rule; ProjectInvalid names each bad field."""
    errors: dict[str, str] = {}
    clean = dict(values)
    for field in ("name", "guidelines"):
        if field in values and (problem := text_problem(values[field])):
            errors[field] = f"{field} {problem}."
    if "flag_labels" in values:
        labels = values["flag_labels"]
        if not isinstance(labels, list) or not all(
            isinstance(label, str) and label.strip() for label in labels
        ):
            errors["flag_labels"] = "flag_labels must be a list of non-empty strings."
        elif len(labels) > MAX_FLAG_LABELS or any(len(label) > MAX_FLAG_LABEL for label in labels):
            errors["flag_labels"] = (
                f"flag_labels holds at most {MAX_FLAG_LABELS} labels of at most {MAX_FLAG_LABEL} characters."
            )
        elif problem := text_problem(labels):
            errors["flag_labels"] = f"flag_labels {problem}."
    if "training_arguments" in values:
        try:
            clean["training_arguments"] = training_arguments_validate(arguments=values["training_arguments"])
        except TrainingArgumentsInvalid as exc:
            errors["training_arguments"] = str(exc)
    if "work_order" in values and values["work_order"] not in Project.WorkOrder.values:
        errors["work_order"] = f"work_order must be one of {', '.join(Project.WorkOrder.values)}."
    if values.get("max_rankings_per_item") is not None:
        limit, wanted = values["max_rankings_per_item"], values.get("rankings_per_item")
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_RANKINGS_PER_ITEM:
            errors["max_rankings_per_item"] = (
                f"max_rankings_per_item must be a whole number from 1 to {MAX_RANKINGS_PER_ITEM}, or empty."
            )
        elif isinstance(wanted, int) and limit < wanted:
            errors["max_rankings_per_item"] = "max_rankings_per_item may not be below rankings_per_item."
    if "revision_window_hours" in values:
        hours = values["revision_window_hours"]
        if (
            not isinstance(hours, int)
            or isinstance(hours, bool)
            or not 0 <= hours <= MAX_REVISION_WINDOW_HOURS
        ):
            errors["revision_window_hours"] = (
                f"revision_window_hours must be a whole number from 0 to {MAX_REVISION_WINDOW_HOURS}."
            )
    if "gold_rate" in values:
        rate = values["gold_rate"]
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
            errors["gold_rate"] = "gold_rate must be a number from 0 to 1 (0.05: one item in twenty is gold)."
    if "calibration_items" in values:
        count = values["calibration_items"]
        if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= MAX_CALIBRATION_ITEMS:
            errors["calibration_items"] = (
                f"calibration_items must be a whole number from 0 to {MAX_CALIBRATION_ITEMS}."
            )
    if errors:
        raise ProjectInvalid(errors)
    return clean


def project_save(*, project: Project) -> Project:
    """Save a new or changed project once its settings keep every rule (ProjectInvalid otherwise)."""
    clean = project_values_validate(values={field: getattr(project, field) for field in PROJECT_FIELDS})
    for field, value in clean.items():
        setattr(project, field, value)
    with transaction.atomic():
        project.save()
        # More rankings wanted per item: items finished under the old number need some again.
        needy_priorities_restore(project=project)
    return project
