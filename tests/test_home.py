"""The home page sends each person to their work."""

import pytest

from tests.factories import ItemFactory, ProjectFactory

pytestmark = pytest.mark.django_db


def test_anonymous_visitors_are_sent_to_the_login_page(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_staff_land_on_the_staff_home(client, staff):
    client.force_login(staff)
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/staff/"


def test_annotators_see_the_active_projects_with_their_counts(client, annotator):
    project = ProjectFactory(name="Helpfulness")
    ItemFactory.create_batch(2, project=project)
    ProjectFactory(name="Archived", is_active=False)
    client.force_login(annotator)
    response = client.get("/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "Helpfulness" in page
    assert "2 items" in page
    assert "Archived" not in page


def test_the_login_form_signs_an_annotator_in(client, annotator):
    response = client.post(
        "/accounts/login/", {"username": annotator.username, "password": "correct horse battery staple"}
    )
    assert response.status_code == 302
    assert client.get("/").status_code == 200
