"""Domain errors become responses in one place: the API's exception handler (common.api)."""

import pytest
from rest_framework.exceptions import NotAuthenticated, ValidationError

from annotation.assignment import AssignmentConflict, AssignmentNotFound, RankingInvalid
from annotation.imports import ImportQueueUnavailable, ProjectImporting
from common.api import exception_handler
from common.errors import DomainError
from preferences.readers import ImportFailed
from tests.factories import ProjectFactory
from training.runs import TrainingQueueUnavailable, TrainingRunFinished
from training.scoring import ModelFilesMissing, NoActiveModel


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (AssignmentNotFound("No such assignment."), 404),
        (AssignmentConflict("The lease expired."), 409),
        (RankingInvalid("Name every answer once."), 400),
        (ProjectImporting("An import is running."), 409),
        (ImportQueueUnavailable("The broker is down."), 503),
        (TrainingQueueUnavailable("The broker is down."), 503),
        (TrainingRunFinished("Run #3 has already finished."), 409),
        (NoActiveModel("No active model."), 409),
        (ModelFilesMissing("The files of v3 are no longer on disk."), 409),
        (ImportFailed("f.jsonl", 7, "not valid JSON"), 400),
        (DomainError("Something a person asked for cannot be done."), 400),
    ],
)
def test_each_kind_of_domain_error_answers_its_status_with_the_documented_body(error, status):
    response = exception_handler(error, {})

    assert response.status_code == status
    assert response.data == {"detail": str(error)}


def test_a_failed_validation_answers_the_documented_body_with_each_field_beside_it():
    nested = ValidationError({"order": {3: ["A valid integer is required."]}, "comment": ["Too long."]})
    plain = ValidationError("The two dates are the wrong way round.")

    assert exception_handler(nested, {}).data == {
        "detail": "order: 3: A valid integer is required.",
        "errors": {"order": {3: ["A valid integer is required."]}, "comment": ["Too long."]},
    }
    assert exception_handler(plain, {}).data == {
        "detail": "The two dates are the wrong way round.",
        "errors": {"non_field_errors": ["The two dates are the wrong way round."]},
    }


def test_other_exceptions_are_left_to_drf():
    assert exception_handler(NotAuthenticated(), {}).status_code == 401
    assert exception_handler(RuntimeError("a bug"), {}) is None  # Django's 500, logged


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/items/", "/api/training/runs/", "/api/training/models/"])
def test_a_project_filter_that_is_no_id_is_a_400_not_a_500(staff_client, path):
    ProjectFactory()

    for value in ("²", "x", "-1", "0", "9" * 5000, str(2**63), "1\x00"):
        response = staff_client.get(path, {"project": value})
        assert response.status_code == 400, (value, response.content)
        assert response.json()["detail"].startswith("project: "), response.json()
        assert set(response.json()["errors"]) == {"project"}
