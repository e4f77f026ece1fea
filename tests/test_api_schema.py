"""The OpenAPI schema tells the truth: real responses of every operation, its successes and its errors, are
checked against what the schema says of them (status documented, content type, body shape)."""

import pytest
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from annotation.models import Assignment, ImportJob, Project
from tests.api_world import SUITE_ROWS
from training.models import RewardModel, TrainingRun

pytestmark = pytest.mark.django_db

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
ROWS = b'{"id": "q1", "prompt": "Q?", "answers": ["a", "b"], "ranking": [0, 1]}\n'
MISSING = 2**40  # an id no row has
SCORE = {
    "conversation": [{"role": "user", "content": "Is it helpful?"}],
    "answers": ["helpful", {"text": "rude"}],
}


def _request(schema, world, method, path, *, who="staff", path_ids=None, query=None, body=None, media=None):
    """Send one request of the operation at `path` and check its response against the schema."""
    operation = schema[path][method.upper()]
    ids = world.path_ids(path) | (path_ids or {})
    kwargs = {}
    if body is not None:
        kwargs = {"body": body, "media_type": media or "application/json"}
    case = operation.Case(path_parameters=ids, query=query, headers=getattr(world, who), **kwargs)
    response = case.call()
    case.validate_response(response, checks=CHECKS)
    return response


def _suite(project: int, name: str) -> dict:
    """An upload of an evaluation suite, as a multipart body."""
    return {"project": project, "name": name, "file": SUITE_ROWS, "holds_back_promotion": True}


def _lease(world) -> Assignment:
    return Assignment.objects.get(pk=world.ids["assignment_id"])


def _order(world) -> list[list[int]]:
    return [[answer_id] for answer_id in _lease(world).answer_order]


# (method, path, keyword arguments of _request, the status expected): every operation, its usual
# success and the errors a caller meets most.
def _requests(world) -> list[tuple[str, str, dict, int]]:
    project, inactive = world.ids["project_id"], world.ids["inactive_project_id"]
    exclusion = "/api/projects/{project_id}/annotators/{annotator_id}/exclusion/"
    return [
        ("get", "/api/projects/", {}, 200),
        ("get", "/api/projects/", {"who": "annotator"}, 200),
        ("get", "/api/projects/", {"query": {"page": 99}}, 404),
        ("post", "/api/projects/", {"body": {"name": "New", "training_arguments": {"epochs": 1}}}, 201),
        ("post", "/api/projects/", {"body": {"name": "Bad", "flag_labels": "spam"}}, 400),
        ("post", "/api/projects/", {"who": "annotator", "body": {"name": "Mine"}}, 403),
        ("get", "/api/projects/{id}/", {}, 200),
        ("get", "/api/projects/{id}/", {"who": "annotator"}, 200),
        ("get", "/api/projects/{id}/", {"who": "annotator", "path_ids": {"id": inactive}}, 404),
        ("put", "/api/projects/{id}/", {"body": {"name": "Renamed", "is_active": True}}, 200),
        ("patch", "/api/projects/{id}/", {"body": {"guidelines": "Be kind."}}, 200),
        ("patch", "/api/projects/{id}/", {"body": {"training_arguments": {"epochs": 0}}}, 400),
        ("delete", "/api/projects/{id}/", {"path_ids": {"id": MISSING}}, 404),
        ("get", "/api/items/", {"query": {"project": project}}, 200),
        ("get", "/api/items/", {"query": {"project": "x"}}, 400),
        ("get", "/api/items/{id}/", {}, 200),
        ("get", "/api/items/{id}/", {"path_ids": {"id": MISSING}}, 404),
        ("post", "/api/projects/{project_id}/next/", {"who": "annotator"}, 200),
        ("post", "/api/projects/{project_id}/next/", {"who": "staff"}, 200),  # a lease of their own
        (
            "post",
            "/api/projects/{project_id}/next/",
            {"who": "annotator", "path_ids": {"project_id": inactive}},
            404,
        ),
        ("get", "/api/projects/{project_id}/progress/", {"who": "annotator"}, 200),
        (
            "get",
            "/api/projects/{project_id}/progress/",
            {"who": "annotator", "path_ids": {"project_id": inactive}},
            404,
        ),
        (
            "post",
            "/api/assignments/{assignment_id}/submit/",
            {"who": "annotator", "body": {"order": [[1]] * 65}},
            400,
        ),
        ("post", "/api/assignments/{assignment_id}/submit/", {"who": "staff", "body": {"order": []}}, 404),
        ("post", "/api/assignments/{assignment_id}/submit/", {"who": "annotator", "body": "order"}, 201),
        ("post", "/api/assignments/{assignment_id}/submit/", {"who": "annotator", "body": "order"}, 200),
        ("post", "/api/assignments/{assignment_id}/skip/", {"who": "annotator"}, 409),
        ("get", "/api/projects/{project_id}/my-rankings/", {"who": "annotator"}, 200),
        (
            "get",
            "/api/projects/{project_id}/my-rankings/",
            {"who": "annotator", "path_ids": {"project_id": inactive}},
            404,
        ),
        (
            "get",
            "/api/rankings/{ranking_id}/reopen/",
            {"who": "annotator", "path_ids": {"ranking_id": MISSING}},
            404,
        ),
        (
            "post",
            "/api/rankings/{ranking_id}/revise/",
            {"who": "annotator", "path_ids": {"ranking_id": MISSING}, "body": {"order": [[1]]}},
            404,
        ),
        (
            "post",
            "/api/rankings/{ranking_id}/revise/",
            {"who": "annotator", "path_ids": {"ranking_id": MISSING}, "body": {"order": [[1]] * 65}},
            400,
        ),
        (
            "post",
            "/api/assignments/{assignment_id}/skip/",
            {"who": "annotator", "path_ids": {"assignment_id": MISSING}},
            404,
        ),
        (
            "post",
            "/api/projects/{project_id}/import/",
            {"body": {"file": ROWS}, "media": "multipart/form-data"},
            201,
        ),
        (
            "post",
            "/api/projects/{project_id}/import/",
            {"body": {"file": b"{not json\n"}, "media": "multipart/form-data"},
            400,
        ),
        (
            "post",
            "/api/projects/{project_id}/import/",
            {"body": {"format": "auto"}, "media": "multipart/form-data"},
            400,
        ),
        ("get", "/api/imports/{job_id}/", {}, 200),
        ("get", "/api/imports/{job_id}/", {"path_ids": {"job_id": MISSING}}, 404),
        ("get", "/api/projects/{project_id}/export/", {"query": {"format": "pairs"}}, 200),
        (
            "get",
            "/api/projects/{project_id}/export/",
            {"query": {"format": "pairs", "container": "parquet"}},
            200,
        ),
        (
            "get",
            "/api/projects/{project_id}/export/",
            {"query": {"format": "pairs", "since": "0000-01-01"}},
            400,
        ),
        ("get", "/api/projects/{project_id}/snapshots/", {}, 200),
        ("get", "/api/projects/{project_id}/snapshots/", {"query": {"format": "csv"}}, 400),
        ("get", "/api/snapshots/{snapshot_id}/download/", {}, 200),
        ("get", "/api/snapshots/{snapshot_id}/download/", {"path_ids": {"snapshot_id": MISSING}}, 404),
        ("get", "/api/projects/{project_id}/agreement/", {"query": {"min_annotators": 1}}, 200),
        ("get", "/api/projects/{project_id}/agreement/", {"query": {"until": "2025-02-30"}}, 400),
        ("get", "/api/projects/{project_id}/annotators/", {}, 200),
        ("get", "/api/projects/{project_id}/annotators/", {"path_ids": {"project_id": MISSING}}, 404),
        ("put", exclusion, {}, 200),
        ("put", exclusion, {}, 200),  # twice is harmless
        ("put", exclusion, {"path_ids": {"annotator_id": MISSING}}, 404),
        ("delete", exclusion, {}, 204),
        ("delete", exclusion, {"path_ids": {"project_id": MISSING}}, 404),
        ("get", "/api/training/runs/", {"query": {"status": "failed"}}, 200),
        ("get", "/api/training/runs/", {"query": {"status": "done"}}, 400),
        ("get", "/api/training/runs/{id}/", {}, 200),
        ("post", "/api/training/runs/", {"body": {"project": project, "arguments": {"epochs": 1}}}, 201),
        ("post", "/api/training/runs/", {"body": {"project": project}}, 409),  # one is queued now
        ("post", "/api/training/runs/", {"body": {"project": project, "arguments": {"epoch": 1}}}, 400),
        ("post", "/api/training/runs/{id}/retry/", {"body": {"arguments": {"lr": -1}}}, 400),
        ("post", "/api/training/runs/{id}/cancel/", {}, 409),  # it failed already
        ("post", "/api/training/runs/{id}/cancel/", {"who": "annotator"}, 403),
        ("get", "/api/training/models/", {"query": {"project": project}}, 200),
        ("get", "/api/training/models/{id}/", {}, 200),
        ("get", "/api/training/models/{id}/download/", {}, 200),
        ("post", "/api/training/models/{id}/activate/", {}, 200),
        ("post", "/api/training/models/{id}/activate/", {"path_ids": {"id": MISSING}}, 404),
        ("get", "/api/training/suites/", {"query": {"project": project}}, 200),
        ("get", "/api/training/suites/", {"query": {"project": 0}}, 400),
        ("get", "/api/training/suites/{id}/", {}, 200),
        ("get", "/api/training/suites/{id}/", {"path_ids": {"id": MISSING}}, 404),
        (
            "post",
            "/api/training/suites/",
            {"body": _suite(project, "rb"), "media": "multipart/form-data"},
            201,
        ),
        (
            "post",
            "/api/training/suites/",
            {"body": _suite(project, "rb"), "media": "multipart/form-data"},
            409,
        ),
        (
            "post",
            "/api/training/suites/",
            {
                "body": {**_suite(project, "bad"), "file": b'{"prompt": "x", "chosen": 1}\n'},
                "media": "multipart/form-data",
            },
            400,
        ),
        (
            "post",
            "/api/training/suites/",
            {"body": _suite(MISSING, "rb"), "media": "multipart/form-data"},
            400,
        ),
        ("patch", "/api/training/suites/{id}/", {"body": {"holds_back_promotion": True}}, 200),
        ("patch", "/api/training/suites/{id}/", {"body": {"holds_back_promotion": "perhaps"}}, 400),
        ("delete", "/api/training/suites/{id}/", {"who": "annotator"}, 403),
        ("delete", "/api/training/suites/{id}/", {}, 204),
        ("delete", "/api/training/suites/{id}/", {}, 404),  # gone now
        ("post", "/api/projects/{project_id}/score/", {"body": SCORE}, 200),
        ("post", "/api/projects/{project_id}/score/", {"body": {"conversation": [], "answers": ["a"]}}, 400),
        (
            "post",
            "/api/projects/{project_id}/score/",
            {"body": SCORE, "path_ids": {"project_id": inactive}},
            409,
        ),
        ("post", "/api/training/runs/{id}/retry/", {"body": {}}, 409),  # the run queued above is running
        ("delete", "/api/projects/{id}/", {}, 409),  # its import job is queued
    ]


def test_every_operation_answers_as_the_schema_says(api_schema, api_world):
    requests = _requests(api_world)
    operations = {(o.ok().method, o.ok().path) for o in api_schema.get_all_operations()}
    assert {(method, path) for method, path, _, _ in requests} == operations  # none left out

    for method, path, options, expected in requests:
        if options.get("body") == "order":
            options = {**options, "body": {"order": _order(api_world)}}
        response = _request(api_schema, api_world, method, path, **options)
        assert response.status_code == expected, (method, path, options, response.status_code, response.text)


def test_a_deleted_project_and_a_snapshot_and_model_whose_files_are_gone_answer_as_documented(
    api_schema, api_world, media
):
    ImportJob.objects.all().delete()
    snapshot_file = api_world.ids["snapshot_id"]
    from annotation.models import ExportSnapshot

    (media / ExportSnapshot.objects.get(pk=snapshot_file).file.name).unlink()
    RewardModel.objects.filter(pk=api_world.ids["model_id"]).update(artifact_path="/nonexistent/model")
    TrainingRun.objects.all().delete()

    gone = {
        ("get", "/api/snapshots/{snapshot_id}/download/"): 404,
        ("get", "/api/training/models/{id}/download/"): 404,
        ("post", "/api/projects/{project_id}/score/"): 409,
        ("delete", "/api/projects/{id}/"): 204,
    }
    for (method, path), expected in gone.items():
        body = SCORE if path.endswith("/score/") else None
        assert _request(api_schema, api_world, method, path, body=body).status_code == expected, path
    assert not Project.objects.filter(pk=api_world.ids["project_id"]).exists()


def test_a_body_over_the_limit_answers_413_as_documented(api_schema, api_world, settings):
    settings.API_BODY_MAX_BYTES = 100
    response = _request(
        api_schema,
        api_world,
        "post",
        "/api/projects/{project_id}/score/",
        body={**SCORE, "answers": ["a" * 200]},
    )
    assert response.status_code == 413
