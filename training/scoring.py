"""Rewards from the active model: loaded once per process, reloaded when the active version changes."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Sequence
from contextlib import suppress
from typing import Any

from django.db import connections

from annotation.models import Project
from common.errors import Conflict

from .models import RewardModel
from .selectors import reward_model_active

log = logging.getLogger(__name__)


class NoActiveModel(Conflict):
    """The project has no active reward model yet."""


class ModelFilesMissing(Conflict):
    """The active model's directory is gone or cannot be loaded: staff activate another version or retrain.

    A conflict with the state, like having no active model, not a 503: asking again will not help.
    """


_lock = threading.Lock()
# project id -> (reward model id, scorer). One small entry per project that was scored in this process.
_scorers: dict[int, tuple[int, Any]] = {}


def active_reward_model(*, project: Project) -> RewardModel:
    """The project's active model, or NoActiveModel."""
    reward_model = reward_model_active(project=project)
    if reward_model is None:
        raise NoActiveModel(f"Project “{project}” has no active reward model yet: train one first.")
    return reward_model


def _scorer_for(reward_model: RewardModel) -> Any:
    with _lock:
        cached = _scorers.get(reward_model.project_id)
        if cached and cached[0] == reward_model.pk:
            return cached[1]
        # Imported here so that web processes that never score never load torch.
        from .reward_model import RewardScorer

        # A path that is no directory would be taken for a hub id and looked for on the network.
        if not os.path.isdir(reward_model.artifact_path):
            log.error("Reward model %s has no directory %s", reward_model.pk, reward_model.artifact_path)
            raise ModelFilesMissing(
                f"The files of {reward_model} are no longer on disk: activate another version or retrain."
            )
        try:
            scorer = RewardScorer(reward_model.artifact_path)
        except (OSError, ValueError) as exc:
            log.exception(
                "Could not load reward model %s from %s", reward_model.pk, reward_model.artifact_path
            )
            raise ModelFilesMissing(
                f"The files of {reward_model} could not be loaded: activate another version or retrain."
            ) from exc
        _scorers[reward_model.project_id] = (reward_model.pk, scorer)
        return scorer


def answers_score(
    *, project: Project, conversation: list[dict[str, str]], answers: Sequence[str]
) -> tuple[RewardModel, list[float]]:
    """The active model and each answer's reward, computed in token-budget batches."""
    reward_model = active_reward_model(project=project)
    scorer = _scorer_for(reward_model)
    return reward_model, [float(reward) for reward in scorer.score(conversation, list(answers))]


def scorers_loaded() -> dict[int, int]:
    """Which model version id each project has loaded in this process (for tests and diagnostics)."""
    with _lock:
        return {project_id: model_id for project_id, (model_id, _) in _scorers.items()}


def scorers_preload(*, project_ids: Iterable[int] | None = None) -> dict[int, int]:
    """Load the active version of each active project (or of these) now, so that no score request waits."""
    active = RewardModel.objects.filter(is_active=True, project__is_active=True)
    if project_ids is not None:
        active = active.filter(project_id__in=list(project_ids))
    for reward_model in active:
        # Logged; the score request answers 409 with the reason.
        with suppress(ModelFilesMissing):
            _scorer_for(reward_model)
    return scorers_loaded()


def scorers_follow_active(
    *, interval_seconds: float, stop: threading.Event | None = None
) -> threading.Thread:
    """Start a daemon thread that loads active versions now and each newly activated one within the interval.

    Web workers call it when they start (`rewardlab.gunicorn_conf.post_worker_init`): loading a model
    takes seconds, which would otherwise fall on the first score request after a start or an activation,
    in each worker.
    """

    stop = stop or threading.Event()

    def follow() -> None:
        while not stop.is_set():
            try:
                scorers_preload()
            except Exception:  # a database hiccup must not end the thread; the next round tries again
                log.exception("Could not preload the active reward models")
            finally:
                connections.close_all()  # this thread's own connections; never hold one between rounds
            stop.wait(interval_seconds)

    thread = threading.Thread(target=follow, name="scorers-follow-active", daemon=True)
    thread.start()
    return thread
