"""Deleting a project, a run, a model version or a snapshot deletes its files, once the deletion commits."""

from pathlib import Path

import pytest
from django.db import transaction
from django.utils.timezone import now

from annotation.exports import export_snapshot_create
from annotation.imports import project_delete
from annotation.models import ExportSnapshot, ImportJob, Project
from tests.conftest import files_under
from tests.factories import ProjectFactory, RankingFactory, UserFactory
from training.model_files import project_model_directory
from training.models import RewardModel, TrainingRun
from training.runs import ProjectGone, ProjectTraining, run_directory, training_run_create

pytestmark = pytest.mark.django_db(transaction=True)  # real commits and rollbacks


@pytest.fixture
def admin_client(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def run_with_files(project: Project, *, status: str = TrainingRun.Status.SUCCEEDED, model: bool = True):
    """A finished run with what the worker leaves: its model's files, and a registered version of it."""
    run = TrainingRun.objects.create(project=project, trigger="api", status=status)
    directory = run_directory(run)
    (directory / "model").mkdir(parents=True)
    (directory / "model" / "model.safetensors").write_bytes(b"\0" * 1024)
    (directory / "model" / "config.json").write_text("{}")
    if model:
        version = (RewardModel.objects.filter(project=project).count()) + 1
        RewardModel.objects.create(
            project=project, version=version, training_run=run, artifact_path=str(directory / "model")
        )
    return run


def project_with_files(**kwargs) -> Project:
    """A project with two trained versions (one active), a failed run's leftovers and snapshots."""
    project = ProjectFactory(**kwargs)
    RankingFactory.create_batch(2, item__project=project)
    run_with_files(project)
    second = run_with_files(project)
    RewardModel.objects.filter(training_run=second).update(is_active=True)
    failed = run_with_files(project, status=TrainingRun.Status.FAILED, model=False)
    (run_directory(failed) / "data").mkdir()
    (run_directory(failed) / "data" / "train.jsonl").write_text("{}\n")
    # A directory whose run row is long gone (a worker died before tidying, say).
    (project_model_directory(project_id=project.pk) / "run-999999").mkdir()
    for format in ("pairs", "rankings"):
        export_snapshot_create(project=project, format=format, force=True)
    return project


def test_deleting_a_project_through_the_api_deletes_its_models_runs_and_snapshots(roots, staff_client):
    project = project_with_files()
    other = project_with_files()
    others_files = files_under(roots)
    assert files_under(project_model_directory(project_id=project.pk))
    snapshots = [
        f"media/{name}"
        for name in ExportSnapshot.objects.filter(project=project).values_list("file", flat=True)
    ]

    response = staff_client.delete(f"/api/projects/{project.pk}/")

    assert response.status_code == 204
    # Before, 263 MB of model directories and every snapshot stayed behind with no row naming them.
    assert not project_model_directory(project_id=project.pk).exists()
    assert all(not (roots / name).exists() for name in snapshots)
    assert files_under(roots) == [
        name for name in others_files if f"project-{project.pk}/" not in name and name not in snapshots
    ]
    assert files_under(project_model_directory(project_id=other.pk))


def test_deleting_a_project_in_the_admin_deletes_its_files(roots, admin_client):
    project = project_with_files()

    response = admin_client.post(f"/admin/annotation/project/{project.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not Project.objects.filter(pk=project.pk).exists()
    assert files_under(roots) == []


def test_a_project_delete_that_rolls_back_keeps_every_file(roots):
    project = project_with_files()
    project_id = project.pk
    before = files_under(roots)

    with pytest.raises(RuntimeError), transaction.atomic():
        project_delete(project=project)
        raise RuntimeError("something later in the same transaction failed")

    assert Project.objects.filter(pk=project_id).exists()
    assert files_under(roots) == before


def test_deleting_one_snapshot_in_the_admin_deletes_its_file_only(roots, admin_client):
    project = project_with_files()
    snapshot, kept = ExportSnapshot.objects.filter(project=project)

    response = admin_client.post(f"/admin/annotation/exportsnapshot/{snapshot.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not (roots / "media" / snapshot.file.name).exists()
    assert (roots / "media" / kept.file.name).exists()


def test_deleting_a_run_deletes_its_directory_but_not_the_model_of_its_version(roots, admin_client):
    project = project_with_files()
    version = RewardModel.objects.filter(project=project).first()
    trained = version.training_run
    failed = TrainingRun.objects.get(project=project, status=TrainingRun.Status.FAILED)

    for run in (trained, failed):
        response = admin_client.post(f"/admin/training/trainingrun/{run.pk}/delete/", {"post": "yes"})
        assert response.status_code == 302

    assert not run_directory(failed).exists()
    assert files_under(run_directory(trained)) == ["model/config.json", "model/model.safetensors"]
    version.refresh_from_db()
    assert version.training_run is None  # the version outlives its run, with its files


def test_a_running_run_cannot_be_deleted_in_the_admin_before_it_is_cancelled(roots, admin_client):
    project = ProjectFactory()
    run = TrainingRun.objects.create(project=project, trigger="api", status=TrainingRun.Status.RUNNING)
    (run_directory(run) / "data").mkdir(parents=True)

    response = admin_client.post(f"/admin/training/trainingrun/{run.pk}/delete/", {"post": "yes"})

    assert response.status_code == 403
    assert TrainingRun.objects.filter(pk=run.pk).exists() and (run_directory(run) / "data").exists()


def test_deleting_a_model_version_deletes_its_directory_and_the_empty_ones_above(roots, admin_client):
    project = ProjectFactory()
    run = run_with_files(project)
    version = run.reward_model
    TrainingRun.objects.filter(pk=run.pk).delete()  # the run row first: its model stays for the version
    assert files_under(run_directory(run)) == ["model/config.json", "model/model.safetensors"]

    response = admin_client.post(f"/admin/training/rewardmodel/{version.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not project_model_directory(project_id=project.pk).exists()
    assert (roots / "models").exists()


def test_a_version_whose_files_lie_outside_the_model_root_keeps_them(roots, tmp_path):
    elsewhere = tmp_path / "hand-placed-model"
    elsewhere.mkdir()
    (elsewhere / "config.json").write_text("{}")
    project = ProjectFactory()
    RewardModel.objects.create(project=project, version=1, artifact_path=str(elsewhere))

    project_delete(project=project)

    assert (elsewhere / "config.json").exists()


def test_an_import_jobs_upload_goes_with_its_row(roots):
    from django.core.files.base import ContentFile
    from django.utils import timezone

    # A job's own run deletes its upload; should one be left named, it goes with the row.
    job = ImportJob(
        project=ProjectFactory(),
        file_name="rows.jsonl",
        status=ImportJob.Status.FAILED,
        error="x",
        finished_at=timezone.now(),
    )
    job.upload.save("rows.jsonl", ContentFile(b"{}\n"))
    assert files_under(roots / "media") == [job.upload.name]

    job.delete()

    assert files_under(roots / "media") == []


def test_a_projects_evaluation_suite_files_go_with_it(roots):
    from django.core.files.base import ContentFile

    from training.models import EvaluationSuite

    project = ProjectFactory()
    suite = EvaluationSuite(project=project, name="helpfulness", file_name="suite.jsonl", sha256="0" * 64)
    suite.file.save("suite.jsonl", ContentFile(b"{}\n"))
    assert files_under(roots / "media") == [suite.file.name]

    project_delete(project=project)

    assert files_under(roots / "media") == []


def test_the_project_directory_is_where_each_run_keeps_its_files(roots):
    run = TrainingRun.objects.create(project=ProjectFactory(), trigger="api")

    assert run_directory(run).parent == project_model_directory(project_id=run.project_id)


def test_snapshot_files_are_deleted_only_once_the_deletion_commits(roots):
    project = ProjectFactory()
    RankingFactory(item__project=project)
    snapshot = export_snapshot_create(project=project, format="pairs")
    path = Path(roots / "media" / snapshot.file.name)

    with transaction.atomic():
        snapshot.delete()
        assert path.exists(), "not while the deletion may still roll back"

    assert not path.exists()


@pytest.mark.parametrize("status", [TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING])
def test_a_project_with_an_unfinished_run_is_not_deleted_by_the_service_the_api_or_the_admin(
    roots, staff_client, admin_client, status
):
    project = project_with_files()
    unfinished = TrainingRun.objects.create(project=project, trigger="api", status=status)
    before = files_under(roots)

    with pytest.raises(ProjectTraining, match=rf"training run #{unfinished.pk} {status}; cancel it"):
        project_delete(project=project)
    api = staff_client.delete(f"/api/projects/{project.pk}/")
    admin = admin_client.post(f"/admin/annotation/project/{project.pk}/delete/", {"post": "yes"})

    assert api.status_code == 409 and f"training run #{unfinished.pk}" in api.json()["detail"]
    assert admin.status_code == 403
    assert Project.objects.filter(pk=project.pk).exists() and files_under(roots) == before
    TrainingRun.objects.filter(pk=unfinished.pk).update(
        status=TrainingRun.Status.CANCELLED, finished_at=now()
    )
    assert staff_client.delete(f"/api/projects/{project.pk}/").status_code == 204
    assert files_under(roots) == []


def test_a_run_asked_for_as_its_project_is_deleted_is_refused_as_gone_not_a_server_error():
    project = ProjectFactory()
    project_delete(project=Project.objects.get(pk=project.pk))  # another request, first to commit

    # This request still holds the project it read before: the run's insert fails on the missing row.
    with pytest.raises(ProjectGone, match="was deleted; no run was started"):
        training_run_create(project=project, trigger=TrainingRun.Trigger.API)

    assert not TrainingRun.objects.exists()
