"""The evaluation suites API: upload, list, detail with each version's figures, the promotion rule, delete,
and who may do each (staff with the EvaluationSuite permission the suites page asks for)."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from tests.evaluation_setup import suite_rows
from tests.factories import STAFF_PERMISSIONS, ProjectFactory, UserFactory
from training.models import EvaluationSuite, RewardModel, SuiteResult
from training.suites import evaluation_suite_create

pytestmark = pytest.mark.django_db

SUITES = "/api/training/suites/"
SUITE_PERMISSIONS = (
    "training.view_evaluationsuite",
    "training.add_evaluationsuite",
    "training.change_evaluationsuite",
    "training.delete_evaluationsuite",
)


def suite_file(name: str = "rb.jsonl", rows: list[dict] | str | None = None) -> SimpleUploadedFile:
    """A .jsonl suite file: RewardBench-shaped pairs by default, or the text given."""
    rows = suite_rows(count=6) if rows is None else rows
    text = rows if isinstance(rows, str) else "".join(json.dumps(row) + "\n" for row in rows)
    return SimpleUploadedFile(name, text.encode(), content_type="application/octet-stream")


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def suite_staff(db):
    """Staff with every suite permission (their token would do the same)."""
    return client_for(UserFactory(is_staff=True, permissions=SUITE_PERMISSIONS))


def media_files(media) -> list:
    return [path for path in media.rglob("*") if path.is_file()]


def test_staff_upload_a_suite_and_read_it_back_with_what_the_file_holds(media, suite_staff):
    project = ProjectFactory()

    created = suite_staff.post(
        SUITES,
        {"project": project.pk, "name": "safety", "file": suite_file(), "holds_back_promotion": "true"},
        format="multipart",
    )

    assert created.status_code == 201, created.json()
    body = created.json()
    suite = EvaluationSuite.objects.get(project=project)
    assert body["id"] == suite.pk
    assert (body["project"], body["name"], body["file_name"], body["format"]) == (
        project.pk,
        "safety",
        "rb.jsonl",
        "pairs",
    )
    assert (body["items"], body["pairs"]) == (6, 6)
    assert body["subsets"] == {"good-vs-bad": 3, "good-vs-neutral": 3}
    assert body["sha256"] == suite.sha256 and len(body["sha256"]) == 64
    assert body["holds_back_promotion"] is True
    assert body["created_by"] == suite.created_by_id is not None
    assert body["results"] == []
    assert (media / suite.file.name).is_file()
    assert suite_staff.get(f"{SUITES}{suite.pk}/").json() == body


def test_a_suite_uploaded_without_a_name_is_named_after_its_file_and_does_not_hold_back(media, suite_staff):
    project = ProjectFactory()

    created = suite_staff.post(
        SUITES, {"project": project.pk, "file": suite_file("hh.jsonl")}, format="multipart"
    )

    assert created.status_code == 201, created.json()
    assert (created.json()["name"], created.json()["holds_back_promotion"]) == ("hh.jsonl", False)


def test_the_list_filtered_by_project_shows_only_that_projects_suites(media, suite_staff):
    first, second = ProjectFactory(), ProjectFactory()
    for project, name in ((first, "b"), (first, "a"), (second, "c")):
        evaluation_suite_create(project=project, upload=suite_file(), name=name)

    mine = suite_staff.get(SUITES, {"project": first.pk})
    everyone = suite_staff.get(SUITES)

    assert mine.status_code == 200
    assert [suite["name"] for suite in mine.json()["results"]] == ["a", "b"]
    assert {suite["project"] for suite in mine.json()["results"]} == {first.pk}
    assert "results" not in mine.json()["results"][0]  # each version's figures are in the detail only
    assert everyone.json()["count"] == 3
    assert suite_staff.get(SUITES, {"project": "first"}).status_code == 400


def test_a_suite_shows_each_versions_figures_newest_version_first(media, suite_staff):
    project = ProjectFactory()
    suite = evaluation_suite_create(project=project, upload=suite_file(), name="rb")
    for version, accuracy in ((1, 0.5), (2, 0.75)):
        model = RewardModel.objects.create(project=project, version=version, artifact_path="/nowhere")
        SuiteResult.objects.create(
            reward_model=model,
            suite=suite,
            pairwise_accuracy=accuracy,
            pairs=6,
            figures={"pairwise_accuracy": accuracy, "subsets": {"good-vs-bad": 1.0, "odd": None}},
        )

    results = suite_staff.get(f"{SUITES}{suite.pk}/").json()["results"]

    assert [(r["version"], r["pairwise_accuracy"], r["pairs"]) for r in results] == [
        (2, 0.75, 6),
        (1, 0.5, 6),
    ]
    assert results[0]["reward_model"] == RewardModel.objects.get(version=2).pk
    assert results[0]["subsets"] == {"good-vs-bad": 1.0}  # a subset without a figure is left out


def test_a_line_the_readers_refuse_answers_400_with_file_and_line_and_stores_nothing(media, suite_staff):
    project = ProjectFactory()
    text = "".join(json.dumps(row) + "\n" for row in suite_rows(count=2)) + '{"prompt": "x", "chosen": 1}\n'

    response = suite_staff.post(
        SUITES,
        {"project": project.pk, "name": "bad", "file": suite_file("bad.jsonl", text)},
        format="multipart",
    )

    assert response.status_code == 400
    assert response.json()["detail"].startswith("bad.jsonl:3: ")
    assert not EvaluationSuite.objects.exists()
    assert not media_files(media)


def test_a_file_without_a_single_preference_is_refused(media, suite_staff):
    unranked = json.dumps({"prompt": "q", "answers": ["x", "y"]}) + "\n"

    response = suite_staff.post(
        SUITES, {"project": ProjectFactory().pk, "file": suite_file("u.jsonl", unranked)}, format="multipart"
    )

    assert response.status_code == 400
    assert "states no preference" in response.json()["detail"]
    assert not EvaluationSuite.objects.exists()


def test_a_name_the_project_already_uses_answers_409_and_stores_nothing(media, suite_staff):
    project = ProjectFactory()
    evaluation_suite_create(project=project, upload=suite_file(), name="rb")
    stored = media_files(media)

    response = suite_staff.post(
        SUITES, {"project": project.pk, "name": " rb ", "file": suite_file("rb2.jsonl")}, format="multipart"
    )
    elsewhere = suite_staff.post(
        SUITES, {"project": ProjectFactory().pk, "name": "rb", "file": suite_file()}, format="multipart"
    )

    assert response.status_code == 409
    assert response.json() == {"detail": f"Project “{project}” already has a suite named “rb”."}
    assert elsewhere.status_code == 201  # names are unique per project
    assert EvaluationSuite.objects.filter(project=project).count() == 1
    assert len(media_files(media)) == len(stored) + 1


def test_an_upload_needs_a_project_and_a_file(media, suite_staff):
    no_file = suite_staff.post(SUITES, {"project": ProjectFactory().pk, "name": "x"}, format="multipart")
    no_project = suite_staff.post(SUITES, {"file": suite_file()}, format="multipart")

    assert no_file.status_code == 400 and set(no_file.json()["errors"]) == {"file"}
    assert no_project.status_code == 400 and set(no_project.json()["errors"]) == {"project"}
    assert not EvaluationSuite.objects.exists()


def test_patch_turns_the_promotion_rule_on_and_off(media, suite_staff):
    suite = evaluation_suite_create(project=ProjectFactory(), upload=suite_file(), name="rb")
    url = f"{SUITES}{suite.pk}/"

    on = suite_staff.patch(url, {"holds_back_promotion": True}, format="json")
    suite.refresh_from_db()
    assert on.status_code == 200 and on.json()["holds_back_promotion"] is True
    assert suite.holds_back_promotion

    off = suite_staff.patch(url, {"holds_back_promotion": False}, format="json")
    suite.refresh_from_db()
    assert off.status_code == 200 and off.json()["holds_back_promotion"] is False
    assert not suite.holds_back_promotion

    assert suite_staff.patch(url, {}, format="json").status_code == 400


def test_delete_removes_the_suite_its_figures_and_its_file(
    media, suite_staff, django_capture_on_commit_callbacks
):
    project = ProjectFactory()
    suite = evaluation_suite_create(project=project, upload=suite_file(), name="rb")
    model = RewardModel.objects.create(project=project, version=1, artifact_path="/nowhere")
    SuiteResult.objects.create(reward_model=model, suite=suite, pairwise_accuracy=0.5, pairs=6)
    stored = media / suite.file.name
    assert stored.is_file()

    with django_capture_on_commit_callbacks(execute=True):
        response = suite_staff.delete(f"{SUITES}{suite.pk}/")

    assert response.status_code == 204
    assert not EvaluationSuite.objects.exists() and not SuiteResult.objects.exists()
    assert RewardModel.objects.filter(pk=model.pk).exists()
    assert not stored.exists()
    assert suite_staff.delete(f"{SUITES}{suite.pk}/").status_code == 404


OPERATIONS = [
    ("get", "", None, "training.view_evaluationsuite"),
    ("get", "{suite}/", None, "training.view_evaluationsuite"),
    ("post", "", "upload", "training.add_evaluationsuite"),
    ("patch", "{suite}/", {"holds_back_promotion": True}, "training.change_evaluationsuite"),
    ("delete", "{suite}/", None, "training.delete_evaluationsuite"),
]


def _call(client, operation, suite: EvaluationSuite):
    method, path, body, _ = operation
    url = SUITES + path.format(suite=suite.pk)
    if body == "upload":
        upload = {"project": suite.project_id, "name": "new", "file": suite_file()}
        return client.post(url, upload, format="multipart")
    return getattr(client, method)(url, body, format="json")


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: f"{op[0].upper()} {op[1] or 'list'}")
def test_annotators_and_staff_without_the_permission_are_refused_and_nothing_changes(media, operation):
    suite = evaluation_suite_create(project=ProjectFactory(), upload=suite_file(), name="rb")
    permission = operation[3]
    others = [p for p in (*STAFF_PERMISSIONS, *SUITE_PERMISSIONS) if p != permission]

    anonymous = _call(APIClient(), operation, suite)
    annotator = _call(client_for(UserFactory()), operation, suite)
    staff_without = _call(client_for(UserFactory(is_staff=True, permissions=others)), operation, suite)
    unchanged = list(EvaluationSuite.objects.values_list("pk", "holds_back_promotion"))
    staff_with = _call(client_for(UserFactory(is_staff=True, permissions=[permission])), operation, suite)

    assert anonymous.status_code in (401, 403)
    assert annotator.status_code == 403
    assert staff_without.status_code == 403
    assert "permission" in staff_without.json()["detail"]
    assert unchanged == [(suite.pk, False)]
    assert staff_with.status_code in (200, 201, 204), staff_with.content
