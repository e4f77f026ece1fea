"""Importing files over the API and from the admin: staff only, all or nothing."""

import gzip
import json
from datetime import datetime

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotation.models import ImportBatch, ImportJob, Item, Ranking
from tests.factories import ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db

ROWS = [
    {"id": "one", "prompt": "First?", "answers": ["a", "b", "c"], "ranking": [2, [0, 1]]},
    {"id": "two", "prompt": "Second?", "answers": ["d", "e"]},
]


def jsonl(rows: list, *, name: str = "rows.jsonl", gz: bool = False) -> SimpleUploadedFile:
    content = "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows).encode()
    return SimpleUploadedFile(name, gzip.compress(content) if gz else content)


def test_anonymous_users_cannot_import(api_client):
    project = ProjectFactory()

    response = api_client.post(
        f"/api/projects/{project.pk}/import/", {"file": jsonl(ROWS)}, format="multipart"
    )

    assert response.status_code in (401, 403)
    assert not Item.objects.exists()


def test_annotators_cannot_import(annotator_client):
    project = ProjectFactory()

    response = annotator_client.post(
        f"/api/projects/{project.pk}/import/", {"file": jsonl(ROWS)}, format="multipart"
    )

    assert response.status_code == 403
    assert not Item.objects.exists()


def test_staff_import_a_file_and_get_the_counts(staff_client, staff):
    project = ProjectFactory()

    response = staff_client.post(
        f"/api/projects/{project.pk}/import/",
        {"file": jsonl(ROWS, gz=True, name="r.jsonl.gz")},
        format="multipart",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["format"] == "rankings"
    assert body["file_name"] == "r.jsonl.gz"
    assert (body["lines_read"], body["items_created"], body["answers_created"], body["rankings_created"]) == (
        2,
        2,
        5,
        1,
    )
    batch = ImportBatch.objects.get(pk=body["id"])
    assert batch.created_by == staff
    assert Ranking.objects.get().import_batch == batch


def test_staff_can_name_the_format(staff_client):
    project = ProjectFactory()
    url = f"/api/projects/{project.pk}/import/"

    wrong = staff_client.post(url, {"file": jsonl(ROWS), "format": "pairs"}, format="multipart")
    unknown = staff_client.post(url, {"file": jsonl(ROWS), "format": "csv"}, format="multipart")

    assert wrong.status_code == 400
    assert wrong.json()["detail"] == "rows.jsonl:1: chosen is missing"
    assert unknown.status_code == 400
    assert unknown.json()["detail"] == 'format: "csv" is not a valid choice.'
    assert set(unknown.json()["errors"]) == {"format"}


def test_a_bad_upload_answers_400_with_the_line_and_imports_nothing(staff_client):
    project = ProjectFactory()
    rows = [*ROWS, {"prompt": "Bad", "answers": ["x", "y"], "ranking": [0, 3]}]

    response = staff_client.post(
        f"/api/projects/{project.pk}/import/", {"file": jsonl(rows, name="mine.jsonl")}, format="multipart"
    )

    assert response.status_code == 400
    assert response.json()["detail"].startswith("mine.jsonl:3: ranking names answer 3")
    assert not Item.objects.exists()
    assert not ImportBatch.objects.exists()


def test_a_large_upload_is_streamed_from_a_temporary_file(staff_client, settings, monkeypatch):
    # Over FILE_UPLOAD_MAX_MEMORY_SIZE Django spools the upload to disk; the import reads it from there.
    from annotation import imports

    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1024
    project = ProjectFactory()
    rows = [{"id": f"row-{n}", "prompt": f"Question {n}?", "answers": ["yes", "no"]} for n in range(200)]
    read_from = []
    real_import_file = imports.import_file

    def recording_import_file(*, path, **kwargs):
        read_from.append(path)
        return real_import_file(path=path, **kwargs)

    monkeypatch.setattr(imports, "import_file", recording_import_file)

    response = staff_client.post(
        f"/api/projects/{project.pk}/import/", {"file": jsonl(rows)}, format="multipart"
    )

    assert response.status_code == 201, response.content
    assert response.json()["items_created"] == 200
    # Django's own spooled file, not a second copy written out by the import.
    assert len(read_from) == 1 and not read_from[0].name.startswith("rewardlab-import-")
    assert str(read_from[0]).endswith(".upload.jsonl")


def test_importing_into_a_missing_project_is_404(staff_client):
    response = staff_client.post("/api/projects/999999/import/", {"file": jsonl(ROWS)}, format="multipart")

    assert response.status_code == 404


def test_the_import_endpoints_are_in_the_openapi_schema(staff_client):
    schema = staff_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    operation = schema["paths"]["/api/projects/{project_id}/import/"]["post"]
    assert "multipart/form-data" in operation["requestBody"]["content"]
    assert {"201", "202", "400", "503"} <= set(operation["responses"])
    assert "get" in schema["paths"]["/api/imports/{job_id}/"]


# Large files, or any with background=true, are queued for a worker: 202 and a job to poll.


def test_a_file_over_the_inline_limit_answers_202_with_a_job_to_follow(
    staff_client, staff, settings, media, django_capture_on_commit_callbacks
):
    from annotation.tasks import run_import_job

    settings.IMPORT_INLINE_MAX_BYTES = 100
    project = ProjectFactory()

    with django_capture_on_commit_callbacks() as callbacks:
        response = staff_client.post(
            f"/api/projects/{project.pk}/import/",
            {"file": jsonl(ROWS, gz=True, name="r.jsonl.gz")},
            format="multipart",
        )

    assert response.status_code == 202, response.content
    queued = response.json()
    job = ImportJob.objects.get(pk=queued["id"])
    status_url = f"http://testserver/api/imports/{job.pk}/"
    assert (queued["status"], queued["file_name"], queued["batch"]) == ("queued", "r.jsonl.gz", None)
    assert queued["links"]["self"] == response["Location"] == status_url
    assert job.created_by == staff and len(callbacks) == 1
    assert not Item.objects.exists()

    run_import_job(job.pk)  # what the worker does with the message
    done = staff_client.get(status_url)

    assert done.status_code == 200
    body = done.json()
    assert (body["status"], body["error"]) == ("succeeded", "")
    batch = body["batch"]
    assert (batch["format"], batch["items_created"], batch["answers_created"], batch["rankings_created"]) == (
        "rankings",
        2,
        5,
        1,
    )


def test_background_true_queues_a_small_file_and_a_bad_line_shows_on_the_job(
    staff_client, media, django_capture_on_commit_callbacks
):
    from annotation.tasks import run_import_job

    project = ProjectFactory()
    rows = [*ROWS, {"prompt": "Bad", "answers": ["x", "y"], "ranking": [0, 3]}]

    with django_capture_on_commit_callbacks():
        response = staff_client.post(
            f"/api/projects/{project.pk}/import/",
            {"file": jsonl(rows, name="mine.jsonl"), "background": "true"},
            format="multipart",
        )
    assert response.status_code == 202, response.content
    run_import_job(response.json()["id"])
    body = staff_client.get(response.json()["links"]["self"]).json()

    assert body["status"] == "failed" and body["batch"] is None
    assert body["error"].startswith("mine.jsonl:3: ranking names answer 3")
    moments = [datetime.fromisoformat(body[key]) for key in ("started_at", "heartbeat_at", "finished_at")]
    assert moments == sorted(moments), "the job's heartbeat is shown, between its start and end"
    assert not Item.objects.exists()


def test_only_staff_can_follow_an_import_job(api_client, annotator_client, staff_client, media):
    job = ImportJob.objects.create(project=ProjectFactory(), file_name="rows.jsonl")
    url = f"/api/imports/{job.pk}/"

    assert api_client.get(url).status_code in (401, 403)
    assert annotator_client.get(url).status_code == 403
    assert staff_client.get(url).json()["status"] == "queued"
    assert staff_client.get("/api/imports/999999/").status_code == 404


# The admin's "Import data" page.


def test_the_project_page_in_the_admin_links_to_the_import_page(admin_client_logged_in):
    project = ProjectFactory()

    page = admin_client_logged_in.get(f"/admin/annotation/project/{project.pk}/change/")

    assert page.status_code == 200
    assert f'href="/admin/annotation/project/{project.pk}/import/"'.encode() in page.content


def test_staff_import_a_file_from_the_admin(admin_client_logged_in):
    project = ProjectFactory()
    url = f"/admin/annotation/project/{project.pk}/import/"
    assert admin_client_logged_in.get(url).status_code == 200

    response = admin_client_logged_in.post(url, {"file": jsonl(ROWS), "format": "auto"}, follow=True)

    assert response.redirect_chain[-1][0] == f"/admin/annotation/project/{project.pk}/change/"
    assert "2 new items, 5 new answers, 1 new imported rankings" in response.content.decode()
    assert Item.objects.filter(project=project).count() == 2


def test_a_bad_file_in_the_admin_shows_the_line_and_imports_nothing(admin_client_logged_in):
    project = ProjectFactory()

    response = admin_client_logged_in.post(
        f"/admin/annotation/project/{project.pk}/import/",
        {"file": jsonl([ROWS[0], '{"prompt": oops}'], name="upload.jsonl"), "format": "auto"},
    )

    assert response.status_code == 200
    assert "upload.jsonl:2: not valid JSON" in response.content.decode()
    assert not Item.objects.exists()


def test_people_without_change_permission_cannot_use_the_admin_import(client):
    project = ProjectFactory()
    url = f"/admin/annotation/project/{project.pk}/import/"
    client.force_login(UserFactory())
    assert client.get(url).status_code == 302  # to the admin login: annotators are not staff

    client.force_login(UserFactory(is_staff=True))
    response = client.post(url, {"file": jsonl(ROWS), "format": "auto"})

    assert response.status_code == 403
    assert not Item.objects.exists()
