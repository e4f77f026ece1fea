"""Evaluation suites: files staff upload to a project, on which every new version is scored in its run.

A suite is read when it is uploaded, with the readers the engine uses, so that a file the engine could not
read is refused at the door with its FILE:LINE, never in a training run hours later. Its file never changes
(a new file is a new suite), so a version's figures on it stay comparable with every other version's.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from django.contrib.auth.models import AbstractBaseUser
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction

from annotation.imports import read_limits
from annotation.models import Project
from annotation.projects import text_problem
from common.errors import Conflict, Invalid
from preferences.pairs import ranking_pairs
from preferences.readers import ImportFailed, RowFile, file_format, read_items

from .models import EvaluationSuite

# Every run scores every suite of its project: a suite is a sample, not a training set.
SUITE_MAX_BYTES = 50 * 1024 * 1024
SUITE_NAME_MAX = 100
SUBSET_FIELD = "subset"
SUBSETS_KEPT = 200


class SuiteInvalid(Invalid):
    """An upload that cannot be a suite: no name, too large, unreadable, or without a single pair."""


class SuiteNameTaken(SuiteInvalid, Conflict):
    """The project already has a suite of that name."""


@dataclass
class SuiteSummary:
    """What a suite file holds: its format, items, pairs and rows per subset."""

    format: str
    sha256: str
    items: int = 0
    pairs: int = 0
    subsets: dict[str, int] = field(default_factory=dict)


def suite_file_read(*, path: Path, file_name: str) -> SuiteSummary:
    """Read a suite file through the readers; SuiteInvalid with FILE:LINE when they refuse it."""
    source = RowFile(path, name=file_name, limits=read_limits())
    try:
        format = file_format(source)
        items = pairs = 0
        for item in read_items(source, format):
            items += 1
            pairs += sum(len(ranking_pairs(r.order)) for r in item.rankings if not r.not_rankable)
        subsets = Counter(
            str(row[SUBSET_FIELD])[:200]
            for _, row in source.rows(progress=False)
            if isinstance(row.get(SUBSET_FIELD), str | int) and not isinstance(row.get(SUBSET_FIELD), bool)
        )
    except ImportFailed as exc:
        raise SuiteInvalid(str(exc)) from exc
    if not pairs:
        raise SuiteInvalid(f"{file_name} states no preference: a suite needs pairs or rankings.")
    return SuiteSummary(
        format=format,
        sha256=_file_sha256(path),
        items=items,
        pairs=pairs,
        subsets=dict(subsets.most_common(SUBSETS_KEPT)),
    )


def _name_checked(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise SuiteInvalid("A suite needs a name.")
    if len(name) > SUITE_NAME_MAX:
        raise SuiteInvalid(f"A suite's name is at most {SUITE_NAME_MAX} characters.")
    if problem := text_problem(name):
        raise SuiteInvalid(f"The suite's name {problem}.")
    return name


def evaluation_suite_create(
    *,
    project: Project,
    upload: UploadedFile,
    name: str,
    holds_back_promotion: bool = False,
    created_by: AbstractBaseUser | None = None,
) -> EvaluationSuite:
    """Store an uploaded evaluation file as a suite of the project, once the readers accept it."""
    name = _name_checked(name)
    if upload.size is not None and upload.size > SUITE_MAX_BYTES:
        raise SuiteInvalid(f"{upload.name} is larger than a suite may be ({SUITE_MAX_BYTES // 2**20} MB).")
    if EvaluationSuite.objects.filter(project=project, name=name).exists():
        raise SuiteNameTaken(f"Project “{project}” already has a suite named “{name}”.")
    file_name = Path(upload.name or "suite.jsonl").name[:500]
    with _local_file(upload) as path:
        summary = suite_file_read(path=path, file_name=file_name)
    suite = EvaluationSuite(
        project=project,
        name=name,
        file_name=file_name,
        sha256=summary.sha256,
        format=summary.format,
        items=summary.items,
        pairs=summary.pairs,
        subsets=summary.subsets,
        holds_back_promotion=holds_back_promotion,
        created_by=created_by if created_by and created_by.is_authenticated else None,
    )
    suite.file.save(file_name, upload, save=False)
    try:
        with transaction.atomic():
            suite.save()
    except BaseException as exc:
        suite.file.delete(save=False)
        if isinstance(exc, IntegrityError):
            raise SuiteNameTaken(f"Project “{project}” already has a suite named “{name}”.") from exc
        raise
    return suite


@contextmanager
def _local_file(upload: UploadedFile) -> Iterator[Path]:
    """The upload as a file on this disk: Django's own temporary file, or a copy of one held in memory."""
    if hasattr(upload, "temporary_file_path"):
        yield Path(upload.temporary_file_path())
        return
    handle, name = tempfile.mkstemp(prefix="rewardlab-suite-")
    try:
        with os.fdopen(handle, "wb") as out:
            for piece in upload.chunks():
                out.write(piece)
        yield Path(name)
    finally:
        os.unlink(name)


def evaluation_suite_update(*, suite: EvaluationSuite, holds_back_promotion: bool) -> EvaluationSuite:
    """Turn the suite's promotion rule on or off."""
    suite.holds_back_promotion = holds_back_promotion
    suite.save(update_fields=["holds_back_promotion"])
    return suite


def evaluation_suite_delete(*, suite: EvaluationSuite) -> None:
    """Delete the suite and its figures for every version; its file goes once that commits (`model_files`)."""
    suite.delete()


def _file_sha256(path: Path) -> str:
    """The digest of the file's bytes, as the engine reports it for the suite it read."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class SuiteFile:
    """A project's suite copied beside a run's data, for the engine (and the active model's comparison)."""

    suite: EvaluationSuite
    path: Path

    @property
    def engine_name(self) -> str:
        """The name the engine reports the suite's figures under: its id, which no rename can change."""
        return str(self.suite.pk)


def suite_files_copy(*, project: Project, directory: Path) -> list[SuiteFile]:
    """Copy each suite of the project into `directory` (the storage may be remote; the engine reads files)."""
    copies = []
    for suite in EvaluationSuite.objects.filter(project=project).order_by("pk"):
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"suite-{suite.pk}{''.join(Path(suite.file_name).suffixes)[-16:]}"
        with suite.file.open("rb") as source, path.open("wb") as copy:
            shutil.copyfileobj(source, copy, 1 << 20)
        copies.append(SuiteFile(suite, path))
    return copies


def suite_arguments(suite_files: list[SuiteFile]) -> list[str]:
    """The engine's `--suite ID=FILE` options."""
    return [option for f in suite_files for option in ("--suite", f"{f.engine_name}={f.path}")]
