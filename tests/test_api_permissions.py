"""Who sees what through the API: anonymous never gets data, annotators only what they need."""

import re

import pytest
from drf_spectacular.generators import SchemaGenerator

from tests.factories import ItemFactory, ProjectFactory

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
    assert "flag_labels" in response.json()


def test_token_authentication_works_for_scripts(staff):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    token = Token.objects.create(user=staff)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert client.get("/api/items/").status_code == 200
