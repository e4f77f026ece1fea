"""Project writes, from the admin form and the API alike, go through one service that checks every rule."""

import pytest

from annotation.models import Project
from annotation.projects import ProjectInvalid, project_save
from tests.factories import ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db

BAD_TRAINING_ARGUMENTS = [
    ({"epoch": 3}, "Unknown training argument 'epoch'"),
    ({"epochs": "3"}, "'epochs' must be a whole number"),
    ({"epochs": 0}, "'epochs' must be from 1"),
    ({"lr": "nan"}, "'lr' must be a finite number"),
    ({"lr": float("inf")}, "'lr' must be a finite number"),
    ({"lr": -0.1}, "lr must be greater than 0"),
    ({"base_model": "--help"}, "not an option"),
    ({"base_model": "bad\x00name"}, "NUL"),
    ({"eval_fraction": 1.5}, "eval_fraction must be between 0 and 1"),
    (["epochs", 3], "must be an object"),
]


@pytest.fixture
def admin_client(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def _admin_form(**changes) -> dict:
    form = {
        "name": "From the admin",
        "guidelines": "",
        "rankings_per_item": "3",
        "allow_ties": "on",
        "flag_labels": '["spam"]',
        "is_active": "on",
        "retrain_min_new_rankings": "50",
        "training_arguments": "{}",
        "work_order": "coverage",
        "max_rankings_per_item": "",
        "revision_window_hours": "24",
        "gold_rate": "0.05",
        "calibration_items": "0",
    }
    return {**form, **changes}


@pytest.mark.parametrize(("arguments", "message"), BAD_TRAINING_ARGUMENTS)
def test_the_service_refuses_bad_training_arguments_and_saves_nothing(arguments, message):
    with pytest.raises(ProjectInvalid, match=message) as refused:
        project_save(project=Project(name="p", training_arguments=arguments))

    assert list(refused.value.errors) == ["training_arguments"]
    assert not Project.objects.exists()


def test_the_api_refuses_a_mistyped_training_argument_on_create_and_on_change(staff_client):
    created = staff_client.post(
        "/api/projects/", {"name": "Typo", "training_arguments": {"epoch": 3}}, format="json"
    )
    project = ProjectFactory(training_arguments={"epochs": 2})
    changed = staff_client.patch(
        f"/api/projects/{project.pk}/", {"training_arguments": {"lr": "nan"}}, format="json"
    )

    assert created.status_code == 400
    assert "Unknown training argument 'epoch'" in created.json()["errors"]["training_arguments"][0]
    assert not Project.objects.filter(name="Typo").exists()
    assert changed.status_code == 400 and "finite number" in changed.json()["errors"]["training_arguments"][0]
    project.refresh_from_db()
    assert project.training_arguments == {"epochs": 2}


def test_the_api_refuses_text_the_database_cannot_store(staff_client):
    response = staff_client.post(
        "/api/projects/", {"name": "Labels", "flag_labels": ["spam", "bad\x00label"]}, format="json"
    )

    assert response.status_code == 400 and "NUL" in response.json()["errors"]["flag_labels"][0]


def test_a_project_created_or_changed_over_the_api_comes_back_whole(staff_client):
    created = staff_client.post(
        "/api/projects/", {"name": "Good", "training_arguments": {"epochs": 2, "lr": 1e-4}}, format="json"
    )
    changed = staff_client.patch(
        f"/api/projects/{created.json()['id']}/", {"is_active": False}, format="json"
    )

    assert created.status_code == 201 and created.json()["item_count"] == 0
    assert created.json()["training_arguments"] == {"epochs": 2, "lr": 1e-4}
    assert changed.status_code == 200 and changed.json()["item_count"] == 0
    assert changed.json()["is_active"] is False


def test_the_admin_form_refuses_a_mistyped_training_argument(admin_client):
    response = admin_client.post(
        "/admin/annotation/project/add/", _admin_form(training_arguments='{"epoch": 3}')
    )

    assert response.status_code == 200  # the form again, with the error beside the field
    assert "Unknown training argument &#x27;epoch&#x27;" in response.content.decode()
    assert not Project.objects.filter(name="From the admin").exists()


def test_the_admin_form_saves_a_good_project_through_the_service(admin_client):
    response = admin_client.post(
        "/admin/annotation/project/add/", _admin_form(training_arguments='{"epochs": 2}')
    )

    assert response.status_code == 302
    assert Project.objects.get(name="From the admin").training_arguments == {"epochs": 2}
