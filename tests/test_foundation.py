"""The project boots: settings, URLs, the OpenAPI schema and the health task."""

import pytest
from django.db import IntegrityError

from annotation.models import Answer, Ranking
from tests.factories import ItemFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_healthz_answers_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_openapi_schema_is_valid_openapi_3(staff_client):
    response = staff_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert "/api/projects/" in schema["paths"]


def test_swagger_docs_page_is_served_without_a_cdn(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    assert b"swagger-ui" in response.content
    assert b"cdn.jsdelivr" not in response.content


def test_external_ids_are_unique_per_project_in_the_database():
    item = ItemFactory(external_id="tree-1")
    ItemFactory(external_id="tree-1")  # another project: allowed
    with pytest.raises(IntegrityError):
        ItemFactory(project=item.project, external_id="tree-1")


def test_a_person_ranks_an_item_only_once():
    item = ItemFactory()
    user = UserFactory()
    order = [[answer.pk] for answer in Answer.objects.filter(item=item)]
    Ranking.objects.create(item=item, annotator=user, order=order)
    with pytest.raises(IntegrityError):
        Ranking.objects.create(item=item, annotator=user, order=order)


def test_a_human_ranking_needs_an_annotator():
    with pytest.raises(IntegrityError):
        Ranking.objects.create(item=ItemFactory(), source=Ranking.Source.HUMAN, order=[])


def test_project_defaults_match_what_annotators_expect():
    project = ProjectFactory()
    assert project.rankings_per_item == 3
    assert project.allow_ties is True
    assert "spam" in project.flag_labels


def test_openapi_schema_validates_without_warnings(tmp_path):
    from django.core.management import call_command

    # --fail-on-warn turns any endpoint drf-spectacular cannot describe into an error.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yml"))
    assert "/api/training/runs/" in (tmp_path / "schema.yml").read_text()


def test_the_favicon_is_served_where_browsers_look_for_it(client, annotator):
    from django.contrib.staticfiles import finders

    redirect = client.get("/favicon.ico")
    client.force_login(annotator)
    home = client.get("/").content.decode()

    assert redirect.status_code == 301 and redirect["Location"].endswith("img/favicon.svg")
    assert finders.find("img/favicon.svg")
    assert 'rel="icon"' in home and "img/favicon.svg" in home
