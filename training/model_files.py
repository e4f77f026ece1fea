"""Model directories under MODEL_ROOT, deleted with the rows they belong to once the deletion commits.

Training keeps a project's files in one directory (`project_model_directory`), a run's in a directory
under it (`runs.run_directory`: the split data and the model it trained). A project is deleted by
annotation's `project_delete`, which cannot know of training (the layers run one way), and runs and
versions go with it in the database cascade, where no service sees them. So, as for annotation's own
files (`annotation.stored_files`), `post_delete` receivers do the cleanup (STYLE, 3, says why services
are the rule; a cascade is what a receiver is for): Django sends `post_delete` for every row a cascade
or a queryset delete removes, from the admin and the API alike. Directories go only once the deletion
commits, so a delete that rolls back keeps them.

- a project: its whole directory;
- a run: its directory, less the model of the version it registered, which outlives the run;
- a version: its model directory, unless another version names it too;
- an evaluation suite: its file in the media storage, as `annotation.stored_files` does for snapshots.

Only what lies under MODEL_ROOT is ever deleted: a version may name a directory placed elsewhere by hand.
"""

from __future__ import annotations

import logging
import os
import shutil
from contextlib import suppress
from functools import partial
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_delete

from annotation.models import Project
from annotation.stored_files import stored_file_delete_on_commit

from .models import EvaluationSuite, RewardModel, TrainingRun
from .runs import run_directory

log = logging.getLogger(__name__)


def project_model_directory(*, project_id: int) -> Path:
    """Where a project's runs keep their files: the parent of each of its runs' `run_directory`."""
    return Path(settings.MODEL_ROOT) / f"project-{project_id}"


def model_directory_delete_on_commit(*, path: Path, using: str | None = None) -> None:
    """Delete a directory under MODEL_ROOT once the transaction commits, keeping versions' models in it."""
    # robust: a directory that cannot be deleted is logged, and never fails the request that committed.
    transaction.on_commit(partial(_model_directory_delete, path=Path(path)), using=using, robust=True)


def _model_directory_delete(*, path: Path) -> None:
    """Delete `path` but for the model directories registered versions still name, then empty parents."""
    root = Path(settings.MODEL_ROOT).resolve()
    target = path.resolve()
    if target == root or not target.is_relative_to(root):
        log.warning("Not deleting %s: it is not inside MODEL_ROOT (%s)", path, root)
        return
    if not target.exists():
        return
    # Read once the deletion has committed: what it removed no longer counts, whatever is left does. The
    # name narrows the query; paths are compared resolved (a version may have been saved under another
    # spelling of MODEL_ROOT).
    named = RewardModel.objects.filter(artifact_path__contains=f"{os.sep}{target.name}")
    resolved = (Path(name).resolve() for name in named.values_list("artifact_path", flat=True))
    kept = [model for model in resolved if model.is_relative_to(target)]
    _delete_all_but(target, kept)
    log.info("Deleted %s with its row%s", path, f", keeping {len(kept)} registered model(s)" if kept else "")
    parent = target.parent
    while parent != root and parent.is_relative_to(root):
        with suppress(OSError):
            parent.rmdir()  # only when nothing is left in it
        parent = parent.parent


def _delete_all_but(directory: Path, kept: list[Path]) -> None:
    """Delete the directory, or where it holds a kept path, everything in it that holds none."""
    if directory in kept:
        return
    if not any(path.is_relative_to(directory) for path in kept):
        shutil.rmtree(directory)
        return
    for child in directory.iterdir():
        if child.is_dir() and not child.is_symlink():
            _delete_all_but(child, kept)
        else:
            child.unlink()


def _project_deleted(sender: type, instance: Project, using: str, **kwargs: Any) -> None:
    model_directory_delete_on_commit(path=project_model_directory(project_id=instance.pk), using=using)


def _run_deleted(sender: type, instance: TrainingRun, using: str, **kwargs: Any) -> None:
    model_directory_delete_on_commit(path=run_directory(instance), using=using)


def _reward_model_deleted(sender: type, instance: RewardModel, using: str, **kwargs: Any) -> None:
    if instance.artifact_path:
        model_directory_delete_on_commit(path=Path(instance.artifact_path), using=using)


def _suite_deleted(sender: type, instance: EvaluationSuite, using: str, **kwargs: Any) -> None:
    stored_file_delete_on_commit(name=instance.file.name, using=using)


def model_files_follow_rows() -> None:
    """Delete the files of a project, run, version or suite with its row (TrainingConfig.ready)."""
    for model, receiver in (
        (Project, _project_deleted),
        (TrainingRun, _run_deleted),
        (RewardModel, _reward_model_deleted),
        (EvaluationSuite, _suite_deleted),
    ):
        post_delete.connect(receiver, sender=model, dispatch_uid=f"model-files-of-{model._meta.label}")
