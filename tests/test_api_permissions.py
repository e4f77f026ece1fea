"""Who sees what through the API: anonymous never gets data, annotators only what they need, staff what
their Django model permissions allow (as in the admin)."""

import re

import pytest
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from tests.factories import STAFF_PERMISSIONS, ItemFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db

PUBLIC_PATHS = {"/api/schema/"}
# What an annotator may call; every other API operation is staff only.
ANNOTATOR_OPERATIONS = {
    ("get", "/api/projects/{}/"),
    ("get", "/api/projects/"),
    ("post", "/api/projects/{}/next/"),
    ("get", "/api/projects/{}/progress/"),
    ("post", "/api/assignments/{}/submit/"),
    ("post", "/api/assignments/{}/skip/"),
    # Undo: an annotator's own rankings (annotation.revisions).
    ("get", "/api/projects/{}/my-rankings/"),
    ("get", "/api/rankings/{}/reopen/"),
    ("post", "/api/rankings/{}/revise/"),
}


def _operations():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    for path, methods in schema["paths"].items():
        if path in PUBLIC_PATHS:
            continue
        for method in methods:
            if method in {"get", "post", "put", "patch", "delete"}:
                yield method, path


def _concrete(path: str, object_id: int) -> str:
    return re.sub(r"\{[^}]+\}", str(object_id), path)


def test_every_api_operation_refuses_anonymous_users(api_client):
    item = ItemFactory()
    operations = list(_operations())
    assert len(operations) >= 5
    for method, path in operations:
        response = getattr(api_client, method)(_concrete(path, item.project_id), {}, format="json")
        assert response.status_code in (401, 403), f"{method.upper()} {path} gave {response.status_code}"


def test_annotators_are_refused_every_staff_operation(annotator_client):
    item = ItemFactory()
    checked = set()
    for method, path in _operations():
        operation = (method, re.sub(r"\{[^}]+\}", "{}", path))
        if operation in ANNOTATOR_OPERATIONS:
            continue
        response = getattr(annotator_client, method)(_concrete(path, item.project_id), {}, format="json")
        assert response.status_code == 403, f"{method.upper()} {path} gave {response.status_code}"
        checked.add(operation)
    # The loop above proves nothing if the schema lost the staff endpoints: name a few that must be in it.
    assert {
        ("post", "/api/projects/"),
        ("post", "/api/projects/{}/import/"),
        ("get", "/api/projects/{}/export/"),
        ("post", "/api/projects/{}/score/"),
        ("post", "/api/training/suites/"),
    } <= checked


def test_annotators_see_only_active_projects_without_staff_fields(annotator_client):
    active = ProjectFactory(name="Active")
    ProjectFactory(name="Archived", is_active=False)
    response = annotator_client.get("/api/projects/")
    assert response.status_code == 200
    names = [project["name"] for project in response.json()["results"]]
    assert names == [active.name]
    assert "training_arguments" not in response.json()["results"][0]


def test_annotators_cannot_change_projects(annotator_client):
    project = ProjectFactory()
    response = annotator_client.patch(f"/api/projects/{project.pk}/", {"name": "Mine now"}, format="json")
    assert response.status_code == 403


def test_staff_create_projects_and_read_items_with_answers(staff_client):
    response = staff_client.post(
        "/api/projects/", {"name": "Helpfulness", "rankings_per_item": 2, "allow_ties": False}, format="json"
    )
    assert response.status_code == 201, response.content
    project_id = response.json()["id"]
    ItemFactory(project_id=project_id, answers=["first", "second"])
    items = staff_client.get(f"/api/items/?project={project_id}").json()["results"]
    assert [answer["text"] for answer in items[0]["answers"]] == ["first", "second"]


def test_staff_get_a_clear_error_for_bad_flag_labels(staff_client):
    project = ProjectFactory()
    response = staff_client.patch(f"/api/projects/{project.pk}/", {"flag_labels": "spam"}, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "detail": "flag_labels must be a list of non-empty strings.",
        "errors": {"flag_labels": ["flag_labels must be a list of non-empty strings."]},
    }


def test_token_authentication_works_for_scripts(staff):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    token = Token.objects.create(user=staff)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert client.get("/api/items/").status_code == 200


# Every staff operation, the one permission it needs (as the admin would ask) and a body that works.
STAFF_OPERATIONS = [
    ("post", "/api/projects/", {"name": "New"}, "annotation.add_project"),
    ("put", "/api/projects/{project}/", {"name": "Renamed"}, "annotation.change_project"),
    ("patch", "/api/projects/{project}/", {"name": "Renamed"}, "annotation.change_project"),
    ("delete", "/api/projects/{project}/", None, "annotation.delete_project"),
    ("post", "/api/projects/{project}/import/", "upload", "annotation.change_project"),
    ("get", "/api/imports/{job}/", None, "annotation.view_importjob"),
    ("get", "/api/items/", None, "annotation.view_item"),
    ("get", "/api/items/{item}/", None, "annotation.view_item"),
    ("get", "/api/projects/{project}/export/?format=pairs", None, "annotation.view_ranking"),
    ("get", "/api/projects/{project}/agreement/", None, "annotation.view_ranking"),
    ("get", "/api/projects/{project}/annotators/", None, "annotation.view_ranking"),
    ("put", "/api/projects/{project}/annotators/{annotator}/exclusion/", None, "annotation.change_project"),
    (
        "delete",
        "/api/projects/{project}/annotators/{annotator}/exclusion/",
        None,
        "annotation.change_project",
    ),
    ("get", "/api/projects/{project}/snapshots/", None, "annotation.view_exportsnapshot"),
    ("get", "/api/snapshots/{snapshot}/download/", None, "annotation.view_exportsnapshot"),
    ("get", "/api/training/runs/", None, "training.view_trainingrun"),
    ("get", "/api/training/runs/{run}/", None, "training.view_trainingrun"),
    ("post", "/api/training/runs/", {"project": "{project}"}, "training.add_trainingrun"),
    ("post", "/api/training/runs/{failed_run}/retry/", {}, "training.add_trainingrun"),
    ("post", "/api/training/runs/{run}/cancel/", None, "training.change_trainingrun"),
    ("get", "/api/training/models/", None, "training.view_rewardmodel"),
    ("get", "/api/training/models/{model}/", None, "training.view_rewardmodel"),
    ("get", "/api/training/models/{model}/download/", None, "training.view_rewardmodel"),
    ("post", "/api/training/models/{model}/activate/", None, "training.change_rewardmodel"),
    ("get", "/api/training/suites/", None, "training.view_evaluationsuite"),
    ("get", "/api/training/suites/{suite}/", None, "training.view_evaluationsuite"),
    ("post", "/api/training/suites/", "suite upload", "training.add_evaluationsuite"),
    (
        "patch",
        "/api/training/suites/{suite}/",
        {"holds_back_promotion": True},
        "training.change_evaluationsuite",
    ),
    ("delete", "/api/training/suites/{suite}/", None, "training.delete_evaluationsuite"),
    (
        "post",
        "/api/projects/{project}/score/",
        {"conversation": [{"role": "user", "content": "Hi?"}], "answers": ["Hello."]},
        "training.view_rewardmodel",
    ),
]


@pytest.fixture
def objects(media, tmp_path):
    """One of everything the staff operations name, by the names their paths use."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from annotation.exports import export_snapshot_create
    from annotation.models import ImportJob
    from tests.api_world import SUITE_ROWS
    from training.models import RewardModel, TrainingRun
    from training.suites import evaluation_suite_create

    project = ProjectFactory()
    item = ItemFactory(project=project)
    suite_upload = SimpleUploadedFile("suite.jsonl", SUITE_ROWS)
    return {
        "project": project.pk,
        "item": item.pk,
        "annotator": UserFactory().pk,
        "job": ImportJob.objects.create(project=ProjectFactory(), file_name="rows.jsonl").pk,
        "snapshot": export_snapshot_create(project=project, format="pairs").pk,
        "run": TrainingRun.objects.create(project=ProjectFactory(), trigger="api").pk,
        "failed_run": TrainingRun.objects.create(project=ProjectFactory(), trigger="api", status="failed").pk,
        "model": RewardModel.objects.create(
            project=project, version=1, artifact_path=str(tmp_path / "model")
        ).pk,
        "suite": evaluation_suite_create(project=project, upload=suite_upload, name="suite").pk,
    }


def _call(client, operation, objects):
    from django.core.files.uploadedfile import SimpleUploadedFile

    method, path, body, _ = operation
    url = path.format(**objects)
    if body == "upload":
        row = b'{"id": "q", "prompt": "Q?", "answers": ["a", "b"], "ranking": [0, 1]}\n'
        return client.post(url, {"file": SimpleUploadedFile("rows.jsonl", row)}, format="multipart")
    if body == "suite upload":
        from tests.api_world import SUITE_ROWS

        upload = SimpleUploadedFile("suite.jsonl", SUITE_ROWS)
        return client.post(url, {"project": objects["project"], "file": upload}, format="multipart")
    if isinstance(body, dict):
        body = {
            key: int(value.format(**objects)) if value == "{project}" else value
            for key, value in body.items()
        }
    return getattr(client, method)(url, body, format="json")


def _client_for(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_the_table_of_staff_operations_names_every_staff_operation_of_the_schema():
    named = {
        (method, re.sub(r"\{[^}]+\}", "{}", path.split("?")[0])) for method, path, _, _ in STAFF_OPERATIONS
    }
    staff_only = {
        (method, re.sub(r"\{[^}]+\}", "{}", path))
        for method, path in _operations()
        if (method, re.sub(r"\{[^}]+\}", "{}", path)) not in ANNOTATOR_OPERATIONS
    }
    assert named == staff_only


@pytest.mark.parametrize("operation", STAFF_OPERATIONS, ids=lambda op: f"{op[0].upper()} {op[1]}")
def test_staff_need_the_model_permission_the_admin_would_ask_for(operation, objects):
    permission = operation[3]
    without = _call(_client_for(UserFactory(is_staff=True)), operation, objects)
    others = [p for p in STAFF_PERMISSIONS if p != permission]
    with_all_others = _call(_client_for(UserFactory(is_staff=True, permissions=others)), operation, objects)
    with_it = _call(_client_for(UserFactory(is_staff=True, permissions=[permission])), operation, objects)

    assert without.status_code == 403, without.content
    assert "permission" in without.json()["detail"]
    assert with_all_others.status_code == 403, with_all_others.content
    assert with_it.status_code not in (401, 403), with_it.content


@pytest.mark.parametrize("operation", STAFF_OPERATIONS, ids=lambda op: f"{op[0].upper()} {op[1]}")
def test_superusers_hold_every_permission(operation, objects):
    superuser = UserFactory(is_staff=True, is_superuser=True)

    assert _call(_client_for(superuser), operation, objects).status_code not in (401, 403)


def test_staff_who_may_not_view_projects_see_what_annotators_see():
    active = ProjectFactory(name="Active", training_arguments={"epochs": 2})
    ProjectFactory(name="Paused", is_active=False)
    plain = _client_for(UserFactory(is_staff=True))
    viewer = _client_for(UserFactory(is_staff=True, permissions=["annotation.view_project"]))

    seen_plain = plain.get("/api/projects/").json()["results"]
    seen_viewer = viewer.get("/api/projects/").json()["results"]

    assert [project["name"] for project in seen_plain] == ["Active"]
    assert "training_arguments" not in seen_plain[0]
    assert sorted(project["name"] for project in seen_viewer) == ["Active", "Paused"]
    assert plain.get(f"/api/projects/{active.pk}/").json().keys() == seen_plain[0].keys()
