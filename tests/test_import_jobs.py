"""Imports queued for a Celery worker: the job runs once, all or nothing, and its upload is deleted."""

import importlib
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.db import connection
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from kombu.exceptions import OperationalError

from annotation import imports, tasks
from annotation.imports import (
    ImportQueueUnavailable,
    import_job_create,
    import_job_run,
    import_jobs_reap_stale,
)
from annotation.models import ImportBatch, ImportJob, Item, Project, Ranking
from tests.conftest import files_under
from tests.factories import ProjectFactory, UserFactory
from tests.test_import_api import ROWS, jsonl
from training.models import RewardModel
from training.registry import reward_model_activate

pytestmark = pytest.mark.django_db

reaper_schedule_migration = importlib.import_module("annotation.migrations.0008_import_job_reaper_schedule")

BAD_ROWS = [*ROWS, {"prompt": "Bad", "answers": ["x", "y"], "ranking": [0, 3]}]


def queue_job(rows, *, name="rows.jsonl", project=None, user=None, capture) -> ImportJob:
    with capture() as callbacks:
        job = import_job_create(upload=jsonl(rows, name=name), project=project or ProjectFactory(), user=user)
    assert len(callbacks) == 1  # the task is sent once the job is committed
    return job


def test_a_queued_job_stores_the_upload_under_imports_and_imports_nothing_yet(
    media, django_capture_on_commit_callbacks
):
    staff = UserFactory(is_staff=True)
    job = queue_job(ROWS, user=staff, capture=django_capture_on_commit_callbacks)

    assert (job.status, job.file_name, job.format, job.created_by) == ("queued", "rows.jsonl", "auto", staff)
    assert files_under(media) == [job.upload.name]
    assert job.upload.name.startswith("imports/")
    assert not Item.objects.exists()


def test_running_a_job_imports_the_file_records_the_batch_and_deletes_the_upload(
    media, django_capture_on_commit_callbacks
):
    staff = UserFactory(is_staff=True)
    job = queue_job(ROWS, user=staff, capture=django_capture_on_commit_callbacks)

    job = import_job_run(job=job)

    assert job.status == ImportJob.Status.SUCCEEDED
    assert job.error == "" and job.started_at <= job.finished_at
    batch = job.batch
    assert (batch.file_name, batch.format, batch.created_by) == ("rows.jsonl", "rankings", staff)
    assert (batch.lines_read, batch.items_created, batch.answers_created, batch.rankings_created) == (
        2,
        2,
        5,
        1,
    )
    assert Ranking.objects.get().import_batch == batch
    assert files_under(media) == [] and job.upload.name == ""


def test_a_job_with_a_bad_line_fails_naming_the_line_and_imports_nothing(
    media, django_capture_on_commit_callbacks
):
    job = queue_job(BAD_ROWS, name="mine.jsonl", capture=django_capture_on_commit_callbacks)

    job = import_job_run(job=job)

    assert job.status == ImportJob.Status.FAILED
    assert job.error.startswith("mine.jsonl:3: ranking names answer 3")
    assert job.error.endswith("nothing was imported.")
    assert job.batch is None and job.finished_at is not None
    assert not Item.objects.exists() and not ImportBatch.objects.exists()
    assert files_under(media) == []


def test_a_redelivered_task_does_nothing(media, django_capture_on_commit_callbacks, monkeypatch):
    from annotation import imports

    job = queue_job(ROWS, capture=django_capture_on_commit_callbacks)
    runs = []
    real_import_file = imports.import_file
    monkeypatch.setattr(imports, "import_file", lambda **kw: runs.append(1) or real_import_file(**kw))

    assert tasks.run_import_job(job.pk) == "succeeded"
    assert tasks.run_import_job(job.pk) == "succeeded"

    assert len(runs) == 1
    assert ImportBatch.objects.count() == 1 and Item.objects.count() == 2


def test_a_job_another_worker_is_running_is_left_alone(media, django_capture_on_commit_callbacks):
    job = queue_job(ROWS, capture=django_capture_on_commit_callbacks)
    ImportJob.objects.filter(pk=job.pk).update(status=ImportJob.Status.RUNNING)

    assert tasks.run_import_job(job.pk) == "running"

    assert not Item.objects.exists()
    assert files_under(media) == [job.upload.name]  # still the running worker's to read


def test_a_job_on_storage_without_local_paths_reads_a_temporary_copy(
    settings, django_capture_on_commit_callbacks
):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    }
    job = queue_job(ROWS, capture=django_capture_on_commit_callbacks)
    name = job.upload.name
    assert default_storage.exists(name)
    assert not Path(default_storage.path(name)).exists()  # nothing on this disk to read

    job = import_job_run(job=job)

    assert job.status == ImportJob.Status.SUCCEEDED and job.batch.items_created == 2
    assert not default_storage.exists(name)


def test_a_job_the_broker_cannot_take_fails_and_deletes_its_upload(
    media, django_capture_on_commit_callbacks, monkeypatch
):
    def broker_down(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(tasks.run_import_job, "apply_async", broker_down)

    with (
        pytest.raises(ImportQueueUnavailable, match="broker is unreachable"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        import_job_create(upload=jsonl(ROWS), project=ProjectFactory())

    job = ImportJob.objects.get()
    assert job.status == ImportJob.Status.FAILED and "Connection refused" in job.error
    assert files_under(media) == []


def test_a_job_a_worker_took_although_sending_raised_keeps_its_upload(
    media, django_capture_on_commit_callbacks, monkeypatch
):
    def sent_then_raised(args, **kwargs):
        # The message got out and a worker claimed the job before the broker's reply was lost.
        claimed = {"status": ImportJob.Status.RUNNING, "started_at": timezone.now()}
        ImportJob.objects.filter(pk=args[0]).update(**claimed)
        raise OperationalError("timed out waiting for the broker's reply")

    monkeypatch.setattr(tasks.run_import_job, "apply_async", sent_then_raised)

    with pytest.raises(ImportQueueUnavailable), django_capture_on_commit_callbacks(execute=True):
        import_job_create(upload=jsonl(ROWS), project=ProjectFactory())

    job = ImportJob.objects.get()
    assert job.status == ImportJob.Status.RUNNING and job.error == ""
    assert files_under(media) == [job.upload.name], "the worker still reads it"


# A real commit, as in production: inside the test's transaction the job is only queued once the test
# ends (django_capture_on_commit_callbacks(execute=True) would send it after the view had answered 202).
@pytest.mark.django_db(transaction=True)
def test_the_api_answers_503_when_the_broker_is_down_and_the_job_says_why(broker_down, staff_client, media):
    project = ProjectFactory()

    response = staff_client.post(
        f"/api/projects/{project.pk}/import/", {"file": jsonl(ROWS), "background": "true"}, format="multipart"
    )

    assert response.status_code == 503, response.content
    assert "Celery broker is unreachable" in response.json()["detail"]
    assert "6390" in response.json()["detail"]
    job = ImportJob.objects.get(project=project)
    assert job.status == ImportJob.Status.FAILED and "broker" in job.error
    assert files_under(media) == [] and not Item.objects.exists()


# A worker that dies mid-import cannot say so: it keeps a heartbeat, and a beat task fails jobs without one.


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_goes_on_while_a_slow_import_runs(media, settings, monkeypatch):
    settings.IMPORT_JOB_STALE_SECONDS = 2.4  # a beat every 0.2 s
    monkeypatch.setattr(tasks.run_import_job, "apply_async", lambda *args, **kwargs: None)
    job = import_job_create(upload=jsonl(ROWS), project=ProjectFactory())
    seen = []
    real_write = imports._ChunkWriter.write

    def slow_write(self, records):
        # Inside the import's transaction: the beats must commit from elsewhere to be seen here.
        seen.append(ImportJob.objects.get(pk=job.pk).heartbeat_at)
        time.sleep(1.5)
        seen.append(ImportJob.objects.get(pk=job.pk).heartbeat_at)
        real_write(self, records)

    monkeypatch.setattr(imports._ChunkWriter, "write", slow_write)

    job = import_job_run(job=job)

    assert job.status == ImportJob.Status.SUCCEEDED
    assert job.started_at <= seen[0]  # set when the job was claimed, then by each beat
    assert seen[1] > seen[0] + timedelta(seconds=0.5)


def test_the_reaper_fails_only_running_jobs_with_a_stale_heartbeat_and_deletes_their_uploads(
    media, settings, django_capture_on_commit_callbacks
):
    settings.IMPORT_JOB_STALE_SECONDS = 60
    now = timezone.now()
    stale, fresh, queued = (queue_job(ROWS, capture=django_capture_on_commit_callbacks) for _ in range(3))
    ImportJob.objects.filter(pk=stale.pk).update(
        status=ImportJob.Status.RUNNING,
        started_at=now - timedelta(minutes=5),
        heartbeat_at=now - timedelta(seconds=61),
    )
    ImportJob.objects.filter(pk=fresh.pk).update(
        status=ImportJob.Status.RUNNING,
        started_at=now - timedelta(minutes=5),
        heartbeat_at=now - timedelta(seconds=5),
    )
    ImportJob.objects.filter(pk=queued.pk).update(created_at=now - timedelta(hours=1))

    assert import_jobs_reap_stale(now=now) == [stale.pk]

    stale.refresh_from_db()
    assert stale.status == ImportJob.Status.FAILED and stale.finished_at == now
    assert stale.error.startswith("The worker stopped during the import")
    assert "nothing was imported" in stale.error
    assert stale.upload.name == ""
    assert ImportJob.objects.get(pk=fresh.pk).status == ImportJob.Status.RUNNING
    assert ImportJob.objects.get(pk=queued.pk).status == ImportJob.Status.QUEUED
    assert files_under(media) == sorted([fresh.upload.name, queued.upload.name])
    assert import_jobs_reap_stale(now=now) == []  # already failed: reaped once


def test_the_reaper_fails_a_job_no_worker_took_in_time_and_deletes_its_upload(
    media, settings, django_capture_on_commit_callbacks
):
    settings.IMPORT_JOB_QUEUE_TIMEOUT_SECONDS = 3600
    now = timezone.now()
    forgotten, waiting = (queue_job(ROWS, capture=django_capture_on_commit_callbacks) for _ in range(2))
    ImportJob.objects.filter(pk=forgotten.pk).update(created_at=now - timedelta(seconds=3601))
    ImportJob.objects.filter(pk=waiting.pk).update(created_at=now - timedelta(seconds=3000))

    assert import_jobs_reap_stale(now=now) == [forgotten.pk]

    forgotten.refresh_from_db()
    assert forgotten.status == ImportJob.Status.FAILED and forgotten.upload.name == ""
    assert "No worker took the import" in forgotten.error and "message was lost" in forgotten.error
    assert ImportJob.objects.get(pk=waiting.pk).status == ImportJob.Status.QUEUED
    assert files_under(media) == [waiting.upload.name]
    # The message, should it turn up after all, finds the job failed and leaves it so.
    assert import_job_run(job=forgotten).status == ImportJob.Status.FAILED
    assert not Item.objects.exists()


def test_the_reaper_task_fails_a_job_whose_worker_died(media, settings, django_capture_on_commit_callbacks):
    settings.IMPORT_JOB_STALE_SECONDS = 60
    job = queue_job(ROWS, capture=django_capture_on_commit_callbacks)
    long_ago = timezone.now() - timedelta(minutes=10)
    ImportJob.objects.filter(pk=job.pk).update(
        status=ImportJob.Status.RUNNING, started_at=long_ago, heartbeat_at=long_ago
    )

    assert tasks.reap_stale_import_jobs.apply().get() == [job.pk]

    assert ImportJob.objects.get(pk=job.pk).status == ImportJob.Status.FAILED


def test_the_migration_schedules_the_reaper_every_minute_on_the_default_queue():
    task = PeriodicTask.objects.get(name=reaper_schedule_migration.NAME)

    assert task.task == tasks.reap_stale_import_jobs.name
    assert (task.interval.every, task.interval.period) == (1, IntervalSchedule.MINUTES)
    assert task.queue == "default" and task.enabled
    assert task.expire_seconds == 60, "checks missed while no worker ran are not run all at once later"


# The admin's upload page queues large files.


def test_a_large_file_uploaded_in_the_admin_is_queued_and_its_job_can_be_followed(
    admin_client_logged_in, media, settings, django_capture_on_commit_callbacks
):
    settings.IMPORT_INLINE_MAX_BYTES = 100
    project = ProjectFactory()

    with django_capture_on_commit_callbacks() as callbacks:
        response = admin_client_logged_in.post(
            f"/admin/annotation/project/{project.pk}/import/",
            {"file": jsonl(BAD_ROWS, name="big.jsonl"), "format": "auto"},
            follow=True,
        )

    assert len(callbacks) == 1
    job = ImportJob.objects.get()
    assert response.redirect_chain[-1][0] == f"/admin/annotation/project/{project.pk}/change/"
    page = response.content.decode()
    assert "Queued big.jsonl for import in the background" in page
    assert f'href="/admin/annotation/importjob/{job.pk}/change/"' in page
    assert not Item.objects.exists()

    tasks.run_import_job(job.pk)  # what the worker does
    listing = admin_client_logged_in.get("/admin/annotation/importjob/").content.decode()
    detail = admin_client_logged_in.get(f"/admin/annotation/importjob/{job.pk}/change/").content.decode()
    assert "Failed" in listing and "big.jsonl:3: ranking names answer 3" in listing
    assert "big.jsonl:3: ranking names answer 3" in detail
    assert "Save" not in detail  # read-only


def test_the_admin_import_page_queues_a_small_file_when_asked_and_says_where_large_ones_go(
    admin_client_logged_in, media, django_capture_on_commit_callbacks
):
    project = ProjectFactory()
    url = f"/admin/annotation/project/{project.pk}/import/"
    assert "/admin/annotation/importjob/" in admin_client_logged_in.get(url).content.decode()

    with django_capture_on_commit_callbacks():
        admin_client_logged_in.post(url, {"file": jsonl(ROWS), "format": "auto", "background": "on"})

    assert ImportJob.objects.get().status == ImportJob.Status.QUEUED
    assert not Item.objects.exists()


# End to end: the API queues, a real worker imports from the real Redis broker.


@pytest.mark.celery_worker
def test_a_real_worker_imports_a_file_queued_over_the_api(live_celery_worker, staff_client, media):
    project = ProjectFactory()
    live_celery_worker(queues="default", MEDIA_ROOT=str(media))

    response = staff_client.post(
        f"/api/projects/{project.pk}/import/",
        {"file": jsonl(ROWS, gz=True, name="r.jsonl.gz"), "background": "true"},
        format="multipart",
    )

    assert response.status_code == 202, response.content
    status_url = response.json()["links"]["self"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and staff_client.get(status_url).json()["status"] in (
        "queued",
        "running",
    ):
        time.sleep(0.3)
    body = staff_client.get(status_url).json()
    assert body["status"] == "succeeded", body
    assert (body["batch"]["items_created"], body["batch"]["rankings_created"]) == (2, 1)
    assert Item.objects.filter(project=project).count() == 2
    assert files_under(media) == []


@pytest.mark.django_db(transaction=True)
def test_a_running_import_holds_up_other_imports_of_the_project_but_nothing_else(tmp_path, monkeypatch):
    project = ProjectFactory()
    first_file, second_file = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    first_file.write_bytes(jsonl(ROWS, name="first.jsonl").read())
    second_file.write_bytes(jsonl([{**row, "id": f"second-{n}"} for n, row in enumerate(ROWS)]).read())
    inside, release = threading.Event(), threading.Event()
    parse = imports.read_items

    def parse_then_wait(source, format):
        records = parse(source, format)
        if source.name == "first.jsonl":
            inside.set()  # the import's transaction is open and holds its lock
            release.wait(30)
        yield from records

    monkeypatch.setattr(imports, "read_items", parse_then_wait)
    finished = []

    def run(path):
        try:
            imports.import_file(path=path, project=project)
            finished.append(path.name)
        finally:
            connection.close()

    inserted = threading.Event()

    def insert_rows_of_the_project():
        try:
            ImportJob.objects.create(project=project, file_name="queued.jsonl")
            Item.objects.create(project=project, conversation=[{"role": "user", "content": "meanwhile"}])
            # Promoting a model version locks the project row, as registering a trained one does. (The
            # import's own inserts lock nothing here: Django's foreign keys are checked at commit.)
            reward_model_activate(
                reward_model=RewardModel.objects.create(project=project, version=1, artifact_path="v1")
            )
            inserted.set()
        finally:
            connection.close()

    first = threading.Thread(target=run, args=(first_file,))
    second = threading.Thread(target=run, args=(second_file,))
    inserter = threading.Thread(target=insert_rows_of_the_project)
    first.start()
    assert inside.wait(30)
    try:
        inserter.start()
        assert inserted.wait(10), "queuing an import, adding an item or promoting a model waits"
        second.start()
        time.sleep(1)
        assert finished == [], "a second import of the same project waits for the first"
    finally:
        release.set()
        for thread in (first, second, inserter):
            if thread.is_alive():
                thread.join(30)
    assert finished == ["first.jsonl", "second.jsonl"]
    assert ImportBatch.objects.filter(project=project).count() == 2


def test_a_project_whose_import_jobs_are_finished_can_be_deleted_in_the_admin_but_not_while_one_runs(
    admin_client_logged_in, media, django_capture_on_commit_callbacks
):
    project = ProjectFactory()
    job = queue_job(ROWS, project=project, capture=django_capture_on_commit_callbacks)
    delete_page = f"/admin/annotation/project/{project.pk}/delete/"

    refused = admin_client_logged_in.post(delete_page, {"post": "yes"})
    assert refused.status_code == 403, "a queued job still has its upload to import"
    import_job_run(job=job)
    deleted = admin_client_logged_in.post(delete_page, {"post": "yes"})

    assert deleted.status_code == 302
    assert not ImportJob.objects.exists() and not ImportBatch.objects.exists()


def test_a_project_whose_id_is_past_32_bits_imports(tmp_path):
    project = ProjectFactory(pk=2**31 + 5)  # ids are bigints; the import lock must take them
    path = tmp_path / "rows.jsonl"
    path.write_bytes(jsonl(ROWS).read())

    batch = imports.import_file(path=path, project=project)

    assert batch.items_created == 2 and Item.objects.filter(project=project).count() == 2


def test_the_api_deletes_a_project_only_once_its_import_jobs_have_finished(
    staff_client, media, django_capture_on_commit_callbacks
):
    project = ProjectFactory()
    job = queue_job(ROWS, project=project, capture=django_capture_on_commit_callbacks)

    refused = staff_client.delete(f"/api/projects/{project.pk}/")

    assert refused.status_code == 409 and "still queued or running" in refused.json()["detail"]
    assert files_under(media) == [job.upload.name], "the queued job keeps its upload"
    import_job_run(job=job)
    assert staff_client.delete(f"/api/projects/{project.pk}/").status_code == 204
    assert not ImportJob.objects.exists() and not Item.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_job_queued_after_the_admin_delete_page_was_shown_stops_the_delete(
    admin_client_logged_in, monkeypatch
):
    from annotation.admin import ProjectAdmin

    project = ProjectFactory()
    delete_model = ProjectAdmin.delete_model

    def a_job_is_queued_first(self, request, obj):
        # Another request queues an import (and commits) after the delete page checked the jobs.
        def queue():
            try:
                ImportJob.objects.create(project_id=obj.pk, file_name="late.jsonl")
            finally:
                connection.close()

        other_request = threading.Thread(target=queue)
        other_request.start()
        other_request.join(30)
        return delete_model(self, request, obj)

    monkeypatch.setattr(ProjectAdmin, "delete_model", a_job_is_queued_first)

    response = admin_client_logged_in.post(f"/admin/annotation/project/{project.pk}/delete/", {"post": "yes"})

    assert response.status_code == 403
    assert Project.objects.filter(pk=project.pk).exists()
    assert ImportJob.objects.filter(project=project).exists()
