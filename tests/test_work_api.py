"""The work API the ranking page (and anyone's own UI) drives: next, submit, skip, progress."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotation.api.work import NO_MORE_WORK, NextResponseSerializer
from annotation.models import Assignment, Item, Ranking
from tests.factories import ItemFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_project_totals(settings):
    # Project totals computed on every call, not shared for a few seconds.
    settings.PROJECT_PROGRESS_CACHE_SECONDS = 0


def _next(client, project):
    return client.post(f"/api/projects/{project.pk}/next/", format="json")


def _submit(client, assignment_id, **body):
    return client.post(f"/api/assignments/{assignment_id}/submit/", body, format="json")


def _ranked_order(body) -> list[list[int]]:
    return [[answer["id"]] for answer in body["assignment"]["answers"]]


def test_next_returns_the_item_its_answers_in_lease_order_and_progress(annotator_client, annotator):
    project = ProjectFactory(guidelines="Be **kind**. <script>alert(1)</script>", flag_labels=["spam"])
    item = ItemFactory(
        project=project,
        conversation=[
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": "Hi?"},
        ],
        answers=["one", "two", "three", "four"],
    )
    response = _next(annotator_client, project)
    assert response.status_code == 200
    body = response.json()
    assignment = Assignment.objects.get(annotator=annotator)
    data = body["assignment"]
    assert data["id"] == assignment.pk
    assert data["item_id"] == item.pk
    assert data["expires_at"]
    assert [{"role": turn["role"], "content": turn["content"]} for turn in data["conversation"]] == (
        item.conversation
    )
    assert data["conversation"][1]["html"] == "<p>Hi?</p>"
    assert [answer["id"] for answer in data["answers"]] == assignment.answer_order
    assert {answer["text"] for answer in data["answers"]} == {"one", "two", "three", "four"}
    assert set(data["answers"][0]) == {"id", "text", "html"}, "annotators must not see which model wrote it"
    assert all(answer["html"] == f"<p>{answer['text']}</p>" for answer in data["answers"])
    assert data["project"]["id"] == project.pk
    assert data["project"]["name"] == project.name
    assert data["project"]["allow_ties"] is True
    assert data["project"]["flag_labels"] == ["spam"]
    assert "<strong>kind</strong>" in data["project"]["guidelines_html"]
    assert "<script>" not in data["project"]["guidelines_html"]
    assert body["progress"] == {"mine_today": 0, "mine_total": 0, "project_done": 0, "project_wanted": 3}
    assert "message" not in body


def test_next_answers_in_the_documented_shape(annotator_client):
    project = ProjectFactory(guidelines="")
    ItemFactory(project=project, conversation=[{"role": "user", "content": ""}], answers=["", "**b**"])
    body = _next(annotator_client, project).json()
    serializer = NextResponseSerializer(data=body)
    assert serializer.is_valid(), serializer.errors
    assert set(body["assignment"]["conversation"][0]) == {"role", "content", "html"}
    assert {answer["html"] for answer in body["assignment"]["answers"]} == {"", "<p><strong>b</strong></p>"}


def test_next_again_returns_the_same_assignment_in_the_same_order(annotator_client):
    project = ProjectFactory()
    ItemFactory.create_batch(2, project=project, answers=4)
    first = _next(annotator_client, project).json()["assignment"]
    again = _next(annotator_client, project).json()["assignment"]
    assert again["id"] == first["id"]
    assert again["answers"] == first["answers"]


def test_next_says_so_when_there_is_no_work(annotator_client):
    project = ProjectFactory()
    response = _next(annotator_client, project)
    assert response.status_code == 200
    body = response.json()
    assert body["assignment"] is None
    assert body["message"] == NO_MORE_WORK
    assert body["progress"]["project_wanted"] == 0


def test_next_on_a_missing_project_is_404(annotator_client):
    assert _next(annotator_client, ProjectFactory.build(pk=987654)).status_code == 404


def test_submit_creates_the_ranking_and_a_repeat_returns_the_first(annotator_client, annotator):
    project = ProjectFactory(flag_labels=["spam", "harmful"])
    item = ItemFactory(project=project, answers=3)
    body = _next(annotator_client, project).json()
    assignment_id = body["assignment"]["id"]
    a, b, c = (answer["id"] for answer in body["assignment"]["answers"])
    payload = {
        "order": [[c], [a, b]],
        "not_rankable": False,
        "flags": {str(a): ["spam"]},
        "comment": "a is an ad",
        "seconds_spent": 12.5,
    }
    response = _submit(annotator_client, assignment_id, **payload)
    assert response.status_code == 201
    ranking = Ranking.objects.get(annotator=annotator)
    assert response.json() == {"ranking_id": ranking.pk, "assignment_id": assignment_id, "created": True}
    assert ranking.item_id == item.pk
    assert ranking.order == [[c], [a, b]]
    assert ranking.flags == {str(a): ["spam"]}
    assert ranking.comment == "a is an ad"
    assert ranking.seconds_spent == 12.5

    repeat = _submit(annotator_client, assignment_id, **payload)
    assert repeat.status_code == 200
    assert repeat.json() == {"ranking_id": ranking.pk, "assignment_id": assignment_id, "created": False}
    assert Ranking.objects.count() == 1

    progress = annotator_client.get(f"/api/projects/{project.pk}/progress/").json()
    assert progress == {"mine_today": 1, "mine_total": 1, "project_done": 1, "project_wanted": 3}


def test_not_rankable_is_accepted_with_an_empty_order(annotator_client):
    project = ProjectFactory()
    ItemFactory(project=project)
    assignment_id = _next(annotator_client, project).json()["assignment"]["id"]
    response = _submit(annotator_client, assignment_id, order=[], not_rankable=True)
    assert response.status_code == 201
    assert Ranking.objects.get().not_rankable is True


@pytest.mark.parametrize(
    "payload, message",
    [
        ({"order": []}, "Rank every answer"),
        ({"order": "best first"}, "order:"),
        ({"order": [[1, 2, 3]], "seconds_spent": -2}, "seconds_spent:"),
        ({"flags": {"ANSWER": ["not a label"]}}, "Unknown flag"),
    ],
)
def test_a_bad_submit_is_400_with_a_message_the_page_can_show(annotator_client, payload, message):
    project = ProjectFactory(flag_labels=["spam"])
    ItemFactory(project=project)
    body = _next(annotator_client, project).json()
    order = _ranked_order(body)
    if "flags" in payload:
        payload = {"order": order, "flags": {str(order[0][0]): payload["flags"]["ANSWER"]}}
    response = _submit(annotator_client, body["assignment"]["id"], **payload)
    assert response.status_code == 400
    assert set(response.json()) <= {"detail", "errors"}  # errors: each field's messages, for a form
    assert message in response.json()["detail"]
    assert not Ranking.objects.exists()


@pytest.mark.parametrize(
    "payload, message",
    [
        ({"order": [[1]] * 65}, "order: Ensure this field has no more than 64 elements."),
        ({"order": [list(range(1, 66))]}, "order: 0: Ensure this field has no more than 64 elements."),
        ({"order": [[1, 2]] * 40}, "order: An item has at most 64 answers to rank."),
        ({"order": [[2**63]]}, "order: 0: 0: Ensure this value is less than or equal to"),
        ({"order": [[0]]}, "order: 0: 0: Ensure this value is greater than or equal to 1."),
        (
            {"order": [], "comment": "x" * 5001},
            "comment: Ensure this field has no more than 5000 characters.",
        ),
        ({"order": [], "seconds_spent": 1e300}, "seconds_spent: Ensure this value is less than or equal to"),
        ({"order": [], "flags": {str(i): [] for i in range(65)}}, "flags: An item has at most 64 answers"),
        ({"order": [], "flags": {"1": ["x" * 101]}}, "flags: 1: 0: Ensure this field has no more than 100"),
    ],
)
def test_a_submit_larger_than_any_item_is_refused_before_it_is_built(annotator_client, payload, message):
    project = ProjectFactory(allow_ties=True)
    ItemFactory(project=project)
    assignment_id = _next(annotator_client, project).json()["assignment"]["id"]

    response = _submit(annotator_client, assignment_id, **payload)

    assert response.status_code == 400
    assert response.json()["detail"].startswith(message)
    assert not Ranking.objects.exists()


def test_a_submit_body_of_megabytes_is_refused_unread(annotator_client, settings):
    # Finding 6 of issue #12: 1.7 million `order` groups in 17.6 MB took 15.7 s and ~860 MB to refuse.
    project = ProjectFactory()
    ItemFactory(project=project)
    assignment_id = _next(annotator_client, project).json()["assignment"]["id"]
    body = '{"order": [' + ",".join(["[1]"] * 1_700_000) + "]}"

    response = annotator_client.post(
        f"/api/assignments/{assignment_id}/submit/", body, content_type="application/json"
    )

    assert len(body) > settings.API_BODY_MAX_BYTES
    assert response.status_code == 413
    assert response.json() == {
        "detail": f"The request body is larger than {settings.API_BODY_MAX_BYTES} bytes."
    }


def test_a_submit_just_under_the_body_limit_is_refused_by_the_length_of_order(annotator_client):
    project = ProjectFactory()
    ItemFactory(project=project)
    assignment_id = _next(annotator_client, project).json()["assignment"]["id"]
    body = '{"order": [' + ",".join(["[1]"] * 400_000) + "]}"  # 1.6 MB

    response = annotator_client.post(
        f"/api/assignments/{assignment_id}/submit/", body, content_type="application/json"
    )

    assert response.status_code == 400
    assert response.json()["detail"] == "order: Ensure this field has no more than 64 elements."


def test_an_inactive_project_is_invisible_to_the_work_loop(annotator_client):
    project = ProjectFactory()
    ItemFactory(project=project)
    body = _next(annotator_client, project).json()
    assignment_id = body["assignment"]["id"]
    project.is_active = False
    project.save()

    calls = {
        "next": _next(annotator_client, project),
        "progress": annotator_client.get(f"/api/projects/{project.pk}/progress/"),
        "submit": _submit(annotator_client, assignment_id, order=_ranked_order(body)),
        "skip": annotator_client.post(f"/api/assignments/{assignment_id}/skip/"),
        "project": annotator_client.get(f"/api/projects/{project.pk}/"),
    }

    assert {name: response.status_code for name, response in calls.items()} == dict.fromkeys(calls, 404)
    assert "paused" in calls["next"].json()["detail"]
    assert "paused" in calls["submit"].json()["detail"]
    assert not Ranking.objects.exists()
    assert Assignment.objects.get(pk=assignment_id).status == Assignment.Status.OPEN


def test_ties_are_400_when_the_project_does_not_allow_them(annotator_client):
    project = ProjectFactory(allow_ties=False)
    ItemFactory(project=project, answers=2)
    body = _next(annotator_client, project).json()
    tied = [[answer["id"] for answer in body["assignment"]["answers"]]]
    response = _submit(annotator_client, body["assignment"]["id"], order=tied)
    assert response.status_code == 400
    assert "ties" in response.json()["detail"]


def test_another_annotators_lease_cannot_be_submitted_or_skipped(annotator_client):
    project = ProjectFactory()
    ItemFactory(project=project)
    owner = APIClient()
    owner.force_authenticate(UserFactory())
    body = _next(owner, project).json()
    assignment_id = body["assignment"]["id"]
    response = _submit(annotator_client, assignment_id, order=_ranked_order(body))
    assert response.status_code == 404
    assert "not yours" in response.json()["detail"]
    assert annotator_client.post(f"/api/assignments/{assignment_id}/skip/").status_code == 404
    assert not Ranking.objects.exists()
    assert Assignment.objects.get(pk=assignment_id).status == Assignment.Status.OPEN


def test_an_expired_lease_is_refused_with_a_clear_message(annotator_client):
    project = ProjectFactory()
    ItemFactory(project=project)
    body = _next(annotator_client, project).json()
    assignment_id = body["assignment"]["id"]
    Assignment.objects.filter(pk=assignment_id).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = _submit(annotator_client, assignment_id, order=_ranked_order(body))
    assert response.status_code == 409
    assert "ran out" in response.json()["detail"]
    assert not Ranking.objects.exists()


def test_skip_gives_the_item_back(annotator_client):
    project = ProjectFactory(rankings_per_item=1)
    item = ItemFactory(project=project)
    assignment_id = _next(annotator_client, project).json()["assignment"]["id"]
    response = annotator_client.post(f"/api/assignments/{assignment_id}/skip/")
    assert response.status_code == 200
    assert response.json() == {"assignment_id": assignment_id, "status": "skipped"}
    assert Item.objects.get(pk=item.pk).open_lease_count == 0
    assert _next(annotator_client, project).json()["assignment"] is None


def test_submit_after_skip_is_a_conflict(annotator_client):
    project = ProjectFactory()
    ItemFactory(project=project)
    body = _next(annotator_client, project).json()
    assignment_id = body["assignment"]["id"]
    annotator_client.post(f"/api/assignments/{assignment_id}/skip/")
    response = _submit(annotator_client, assignment_id, order=_ranked_order(body))
    assert response.status_code == 409


def test_anonymous_callers_are_refused_everywhere(api_client):
    project = ProjectFactory()
    ItemFactory(project=project)
    owner = APIClient()
    owner.force_authenticate(UserFactory())
    assignment_id = _next(owner, project).json()["assignment"]["id"]
    calls = [
        api_client.post(f"/api/projects/{project.pk}/next/"),
        api_client.get(f"/api/projects/{project.pk}/progress/"),
        api_client.post(f"/api/assignments/{assignment_id}/submit/", {"order": []}, format="json"),
        api_client.post(f"/api/assignments/{assignment_id}/skip/"),
    ]
    assert [response.status_code in (401, 403) for response in calls] == [True] * 4
    assert Assignment.objects.count() == 1
    assert Assignment.objects.get().status == Assignment.Status.OPEN


def test_the_page_session_needs_a_csrf_token_to_post():
    project = ProjectFactory()
    ItemFactory(project=project)
    user = UserFactory()
    browser = APIClient(enforce_csrf_checks=True)
    browser.force_login(user)
    refused = browser.post(f"/api/projects/{project.pk}/next/")
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]
    assert not Assignment.objects.exists()

    browser.get(f"/projects/{project.pk}/rank/")  # the page sets the CSRF cookie
    token = browser.cookies["csrftoken"].value
    allowed = browser.post(f"/api/projects/{project.pk}/next/", HTTP_X_CSRFTOKEN=token)
    assert allowed.status_code == 200
    assert allowed.json()["assignment"] is not None


def test_people_with_their_own_ui_use_a_token():
    project = ProjectFactory()
    ItemFactory(project=project)
    token = Token.objects.create(user=UserFactory())
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    body = _next(client, project).json()
    response = _submit(client, body["assignment"]["id"], order=_ranked_order(body))
    assert response.status_code == 201


def test_the_work_endpoints_are_in_the_openapi_schema(staff_client):
    schema = staff_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    paths = schema["paths"]
    assert "post" in paths["/api/projects/{project_id}/next/"]
    assert "get" in paths["/api/projects/{project_id}/progress/"]
    submit = paths["/api/assignments/{assignment_id}/submit/"]["post"]
    assert {"200", "201", "400", "404", "409"} <= set(submit["responses"])
    assert "post" in paths["/api/assignments/{assignment_id}/skip/"]
    components = schema["components"]["schemas"]
    assert {"id", "item_id", "expires_at", "conversation", "answers", "project"} <= set(
        components["WorkAssignment"]["properties"]
    )
