"""The training API: runs, model versions, download and scoring (staff only), on real PostgreSQL."""

import io
import tarfile

import pytest
from django.urls import reverse

from tests.factories import ProjectFactory
from tests.training_setup import tiny_base_model_save
from training.models import RewardModel, TrainingRun
from training.scoring import scorers_loaded

pytestmark = pytest.mark.django_db

RUNS = "/api/training/runs/"
MODELS = "/api/training/models/"


@pytest.mark.parametrize(
    "method, url",
    [("get", RUNS), ("post", RUNS), ("get", MODELS), ("post", "/api/projects/1/score/")],
)
def test_training_api_is_for_staff_only(annotator_client, api_client, method, url):
    assert getattr(annotator_client, method)(url, {}, format="json").status_code == 403
    assert getattr(api_client, method)(url, {}, format="json").status_code in (401, 403)


def test_staff_start_a_run_and_a_second_trigger_is_refused_with_a_clear_message(staff_client):
    project = ProjectFactory(training_arguments={"epochs": 2})

    first = staff_client.post(RUNS, {"project": project.pk, "arguments": {"lr": 0.001}}, format="json")
    second = staff_client.post(RUNS, {"project": project.pk}, format="json")

    assert first.status_code == 201, first.json()
    assert first.json()["status"] == "queued"
    assert first.json()["trigger"] == "api"
    assert first.json()["arguments"] == {"epochs": 2, "lr": 0.001}
    assert second.status_code == 409
    assert second.json()["detail"].startswith(
        f"Project “{project}” already has training run #{first.json()['id']}"
    )
    assert TrainingRun.objects.filter(project=project).count() == 1


def test_unknown_training_argument_is_rejected(staff_client):
    project = ProjectFactory()

    response = staff_client.post(RUNS, {"project": project.pk, "arguments": {"epoch": 3}}, format="json")

    assert response.status_code == 400
    assert "Unknown training argument 'epoch'" in str(response.json())


def test_cancel_a_queued_run_then_retry_it(staff_client):
    run = TrainingRun.objects.create(project=ProjectFactory(), trigger="api", arguments={"epochs": 1})

    cancelled = staff_client.post(f"{RUNS}{run.pk}/cancel/")
    again = staff_client.post(f"{RUNS}{run.pk}/cancel/")
    retried = staff_client.post(f"{RUNS}{run.pk}/retry/")

    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert again.status_code == 409 and "already finished" in again.json()["detail"]
    assert retried.status_code == 201
    assert retried.json()["retry_of"] == run.pk and retried.json()["arguments"] == {"epochs": 1}


@pytest.mark.parametrize(
    "arguments, message",
    [
        ('{"epochs": 1e400}', "'epochs' must be a whole number"),
        ('{"lr": "nan"}', "'lr' must be a finite number"),
        ('{"lr": 1e400}', "'lr' must be a finite number"),
        ('{"eval_fraction": -1e400}', "'eval_fraction' must be a finite number"),
        ('{"base_model": "a\\u0000b"}', "NUL"),
        ('{"base_model": "\\ud800"}', "lone surrogate"),
        ('"epochs=3"', "Expected a dictionary"),
    ],
)
def test_run_arguments_that_are_no_finite_numbers_or_no_text_are_400_on_create_and_retry(
    staff_client, arguments, message
):
    project = ProjectFactory()
    failed = TrainingRun.objects.create(project=project, trigger="api", status="failed")

    created = staff_client.post(
        RUNS, f'{{"project": {project.pk}, "arguments": {arguments}}}', content_type="application/json"
    )
    retried = staff_client.post(
        f"{RUNS}{failed.pk}/retry/", f'{{"arguments": {arguments}}}', content_type="application/json"
    )

    for response in (created, retried):
        assert response.status_code == 400, response.content
        assert response.json()["detail"].startswith("arguments: ")
        assert message in response.json()["detail"]
    assert TrainingRun.objects.filter(project=project).count() == 1


def test_a_json_constant_that_is_no_number_is_a_parse_error(staff_client):
    project = ProjectFactory()

    response = staff_client.post(
        RUNS, f'{{"project": {project.pk}, "arguments": {{"lr": NaN}}}}', content_type="application/json"
    )

    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]


def test_runs_list_refuses_a_status_that_is_none_of_the_states(staff_client):
    response = staff_client.get(RUNS, {"status": "done\x00"})

    assert response.status_code == 400
    assert response.json()["detail"].startswith("status: ")


def test_runs_list_filters_by_project_and_status(staff_client):
    mine = TrainingRun.objects.create(project=ProjectFactory(), trigger="api", status="failed")
    TrainingRun.objects.create(project=mine.project, trigger="api")
    TrainingRun.objects.create(project=ProjectFactory(), trigger="api", status="failed")

    body = staff_client.get(RUNS, {"project": mine.project_id, "status": "failed"}).json()

    assert [run["id"] for run in body["results"]] == [mine.pk]


@pytest.mark.parametrize("url", [RUNS, MODELS, "/api/items/"])
def test_a_project_filter_that_is_not_an_id_is_refused_with_the_field_named(staff_client, url):
    response = staff_client.get(url, {"project": "abc"})

    assert response.status_code == 400
    assert response.json() == {
        "detail": "project: A valid integer is required.",
        "errors": {"project": ["A valid integer is required."]},
    }


@pytest.fixture
def two_versions(tmp_path):
    project = ProjectFactory()
    first = RewardModel.objects.create(
        project=project, version=1, artifact_path=str(tiny_base_model_save(tmp_path / "v1")), is_active=True
    )
    second = RewardModel.objects.create(
        project=project,
        version=2,
        artifact_path=str(tiny_base_model_save(tmp_path / "v2")),
        not_active_reason="x",
    )
    return first, second


def test_activate_switches_the_active_version(staff_client, two_versions):
    first, second = two_versions

    response = staff_client.post(f"{MODELS}{second.pk}/activate/")

    assert response.status_code == 200 and response.json()["is_active"] is True
    assert response.json()["not_active_reason"] == ""
    first.refresh_from_db()
    assert not first.is_active
    assert list(RewardModel.objects.filter(is_active=True)) == [second]


def test_download_streams_the_model_directory_as_tar_gz(staff_client, two_versions):
    first, _ = two_versions

    response = staff_client.get(f"{MODELS}{first.pk}/download/")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/gzip"
    root = f"rewardlab-project{first.project_id}-v1"
    with tarfile.open(fileobj=io.BytesIO(b"".join(response.streaming_content)), mode="r:gz") as archive:
        names = archive.getnames()
        config = archive.extractfile(f"{root}/config.json").read()
    assert f"{root}/config.json" in names and f"{root}/model.safetensors" in names
    with open(f"{first.artifact_path}/config.json", "rb") as original:
        assert config == original.read()


def test_download_of_a_deleted_artifact_is_404(staff_client, two_versions, tmp_path):
    first, _ = two_versions
    RewardModel.objects.filter(pk=first.pk).update(artifact_path=str(tmp_path / "gone"))

    response = staff_client.get(f"{MODELS}{first.pk}/download/")

    assert response.status_code == 404
    assert response.json() == {"detail": "The model's files are no longer on disk."}


def test_scoring_without_an_active_model_says_so(staff_client):
    project = ProjectFactory()

    response = staff_client.post(
        f"/api/projects/{project.pk}/score/",
        {"conversation": [{"role": "user", "content": "hi"}], "answers": ["a"]},
        format="json",
    )

    assert response.status_code == 409
    assert "no active reward model" in response.json()["detail"]


def test_scoring_with_an_active_model_whose_files_are_gone_is_409_with_the_reason(staff_client, tmp_path):
    project = ProjectFactory()
    RewardModel.objects.create(
        project=project, version=1, artifact_path=str(tmp_path / "deleted"), is_active=True
    )

    response = staff_client.post(
        f"/api/projects/{project.pk}/score/",
        {"conversation": [{"role": "user", "content": "hi"}], "answers": ["a"]},
        format="json",
    )

    assert response.status_code == 409
    assert "no longer on disk" in response.json()["detail"]
    assert project.pk not in scorers_loaded()


@pytest.mark.parametrize(
    "body, field",
    [
        ('{"conversation": [{"role": "user", "content": "hi"}], "answers": ["bad \\ud800"]}', "answers"),
        ('{"conversation": [{"role": "user", "content": "\\udfff"}], "answers": ["a"]}', "conversation"),
        ({"conversation": [{"role": "user", "content": "hi"}], "answers": [{"text": "nul \x00"}]}, "answers"),
        ({"conversation": [{"role": "user", "content": "hi"}], "answers": ["a"] * 257}, "answers"),
        ({"conversation": [{"role": "user", "content": "hi"}], "answers": [7]}, "answers"),
        ({"conversation": [{"role": "robot", "content": "hi"}], "answers": ["a"]}, "conversation"),
        ({"conversation": [], "answers": ["a"]}, "conversation"),
    ],
)
def test_a_score_request_that_is_no_conversation_and_answers_is_400_naming_the_field(
    staff_client, two_versions, body, field
):
    first, _ = two_versions

    url = f"/api/projects/{first.project_id}/score/"
    if isinstance(body, str):  # a lone surrogate only travels as a JSON escape
        response = staff_client.post(url, body, content_type="application/json")
    else:
        response = staff_client.post(url, body, format="json")

    assert response.status_code == 400, response.content
    assert response.json()["detail"].startswith(f"{field}: ")
    assert first.project_id not in scorers_loaded()  # refused before the model was even loaded


def test_scoring_reloads_the_model_when_the_active_version_changes(staff_client, two_versions):
    first, second = two_versions
    url = reverse("project-score", args=[first.project_id])
    body = {"conversation": [{"role": "user", "content": "the a?"}], "answers": ["helpful", {"text": "rude"}]}

    before = staff_client.post(url, body, format="json").json()
    assert scorers_loaded()[first.project_id] == first.pk
    staff_client.post(f"{MODELS}{second.pk}/activate/")
    after = staff_client.post(url, body, format="json").json()

    assert (before["version"], after["version"]) == (1, 2)
    assert len(before["rewards"]) == len(after["rewards"]) == 2
    assert before["rewards"] != after["rewards"]  # two differently initialised models
    assert scorers_loaded()[first.project_id] == second.pk


def test_training_endpoints_are_in_the_openapi_schema(staff_client):
    paths = staff_client.get("/api/schema/", {"format": "json"}).json()["paths"]

    for path in [
        "/api/training/runs/",
        "/api/training/runs/{id}/",
        "/api/training/runs/{id}/cancel/",
        "/api/training/runs/{id}/retry/",
        "/api/training/models/",
        "/api/training/models/{id}/",
        "/api/training/models/{id}/activate/",
        "/api/training/models/{id}/download/",
        "/api/projects/{project_id}/score/",
    ]:
        assert path in paths
