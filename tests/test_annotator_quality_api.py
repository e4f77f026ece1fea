"""Each annotator's figures over the API, and excluding one (and including them again) over it."""

import dataclasses
import json

import pytest
from rest_framework.test import APIClient

from annotation.annotator_quality import annotator_figures
from tests.factories import STAFF_PERMISSIONS, ProjectFactory, UserFactory
from tests.quality_setup import careful_and_careless

pytestmark = pytest.mark.django_db


def _answers(item) -> list[int]:
    return list(item.answers.order_by("position").values_list("pk", flat=True))


@pytest.fixture
def worked_example():
    """careful ranks as gold and two others do; careless sends every order reversed, untouched, fast."""
    project = ProjectFactory(rankings_per_item=4, gold_rate=0.0)
    careful, careless, _ = careful_and_careless(project=project)
    return project, careful, careless


def _client(*permissions, staff=True):
    client = APIClient()
    client.force_authenticate(UserFactory(is_staff=staff, permissions=list(permissions)))
    return client


def _rankings_export(client, project) -> list[dict]:
    response = client.get(f"/api/projects/{project.pk}/export/?format=rankings")
    assert response.status_code == 200
    return [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]


def test_the_api_gives_the_figures_the_annotators_page_shows(worked_example, staff_client):
    project, careful, careless = worked_example

    response = staff_client.get(f"/api/projects/{project.pk}/annotators/")

    assert response.status_code == 200
    expected = [
        {**dataclasses.asdict(figures), "marked": figures.marked}
        for figures in annotator_figures(project=project)
    ]
    assert response.json() == expected
    rows = {row["username"]: row for row in response.json()}
    assert [row["username"] for row in response.json()] == ["careful", "careless", "other1", "other2"]
    good, bad = rows["careful"], rows["careless"]
    assert (good["annotator_id"], good["rankings"], good["gold_items"], good["gold_tau"]) == (
        careful.pk,
        6,
        3,
        1.0,
    )
    assert (good["shared_items"], good["consensus_tau"], good["median_seconds"]) == (3, 1.0, 35)
    assert good["untouched_share"] == 0.0 and good["skip_rate"] == 0.0
    assert not good["marked"] and good["reasons"] == [] and not good["excluded"]
    assert (bad["annotator_id"], bad["gold_tau"], bad["consensus_tau"]) == (careless.pk, -1.0, -1.0)
    assert bad["median_seconds"] == 1.5 and bad["untouched_share"] == 1.0
    assert bad["marked"] and len(bad["reasons"]) == 4  # gold, the others, untouched and speed
    assert "τ against gold -1.00 (below 0.3)" in bad["reasons"]
    assert "100% of orders sent untouched" in bad["reasons"]


def test_a_project_nobody_ranked_in_has_no_annotators(staff_client):
    project = ProjectFactory()

    assert staff_client.get(f"/api/projects/{project.pk}/annotators/").json() == []


def test_excluding_over_the_api_takes_the_rankings_out_of_the_export_until_included_again(
    worked_example, staff, staff_client
):
    project, _, careless = worked_example
    exclusion = f"/api/projects/{project.pk}/annotators/{careless.pk}/exclusion/"
    before = _rankings_export(staff_client, project)

    first = staff_client.put(exclusion)
    again = staff_client.put(exclusion)  # idempotent, as the page's button
    while_excluded = _rankings_export(staff_client, project)
    excluded_by = project.exclusions.get().excluded_by
    listed = {
        row["username"]: row for row in staff_client.get(f"/api/projects/{project.pk}/annotators/").json()
    }
    included = staff_client.delete(exclusion)
    included_again = staff_client.delete(exclusion)
    after = _rankings_export(staff_client, project)

    assert first.status_code == again.status_code == 200
    assert first.json() == {"project": project.pk, "annotator_id": careless.pk, "excluded": True}
    assert excluded_by == staff  # who excluded them is kept, as from the page
    assert listed["careless"]["excluded"] and not listed["careful"]["excluded"]
    # Gold items stay out of every export: the rows are the 3 shared items' rankings, 4 people each.
    assert len(before) == 12 and sum(row["seconds_spent"] == 2 for row in before) == 3
    assert len(while_excluded) == 9 and all(row["seconds_spent"] != 2 for row in while_excluded)
    assert included.status_code == included_again.status_code == 204
    assert not project.exclusions.exists()
    assert sorted(map(json.dumps, after)) == sorted(map(json.dumps, before))


def test_annotators_and_staff_without_the_permission_are_refused(worked_example, annotator_client):
    project, _, careless = worked_example
    listing = f"/api/projects/{project.pk}/annotators/"
    exclusion = f"{listing}{careless.pk}/exclusion/"
    plain_staff = _client()
    viewer = _client("annotation.view_ranking")
    others = _client(
        *(p for p in STAFF_PERMISSIONS if p not in ("annotation.view_ranking", "annotation.change_project"))
    )

    refused = [
        annotator_client.get(listing),
        annotator_client.put(exclusion),
        annotator_client.delete(exclusion),
        APIClient().get(listing),
        plain_staff.get(listing),
        plain_staff.put(exclusion),
        others.get(listing),
        others.put(exclusion),
        others.delete(exclusion),
        viewer.put(exclusion),  # reading the figures is not excluding anyone
        viewer.delete(exclusion),
    ]

    assert [response.status_code for response in refused] == [403] * len(refused)
    assert all("detail" in response.json() for response in refused)
    assert viewer.get(listing).status_code == 200
    assert not project.exclusions.exists()
    assert _client("annotation.change_project").put(exclusion).status_code == 200


def test_an_unknown_project_or_annotator_is_a_404_with_the_error_body(worked_example, staff_client):
    project, _, careless = worked_example
    missing = 2**40

    answers = [
        staff_client.get(f"/api/projects/{missing}/annotators/"),
        staff_client.put(f"/api/projects/{missing}/annotators/{careless.pk}/exclusion/"),
        staff_client.put(f"/api/projects/{project.pk}/annotators/{missing}/exclusion/"),
        staff_client.delete(f"/api/projects/{project.pk}/annotators/{missing}/exclusion/"),
    ]

    assert [answer.status_code for answer in answers] == [404] * 4
    assert all(set(answer.json()) == {"detail"} for answer in answers)
    assert not project.exclusions.exists()
