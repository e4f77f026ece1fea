"""The annotators page in a real Chromium: the outlier's row is marked with its reasons, Exclude asks first,
and the exclusion shows and is taken back with Include again."""

from pathlib import Path

import pytest
from django.urls import reverse

from annotation.models import AnnotatorExclusion
from tests.factories import STAFF_PERMISSIONS, ProjectFactory, UserFactory
from tests.quality_setup import careful_and_careless

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery staple"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def _project_with_an_outlier():
    """Four gold items: careful ranks them as gold says; careless sends them reversed, untouched, fast."""
    project = ProjectFactory(name="Helpfulness", gold_rate=0.0)
    careful, careless, _ = careful_and_careless(project=project, gold_items=4, shared_items=0)
    return project, careful, careless


def test_staff_exclude_the_marked_annotator_after_confirming_and_include_them_again(browser, live_server):
    project, careful, careless = _project_with_an_outlier()
    staff = UserFactory(is_staff=True, permissions=STAFF_PERMISSIONS)
    path = reverse("project-annotators", args=[project.pk])
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.set_default_timeout(20_000)
    page.goto(f"{live_server.url}{path}")
    assert reverse("login") in page.url  # a staff page: strangers sign in first
    page.fill("#id_username", staff.username)
    page.fill("#id_password", PASSWORD)
    page.click("form button[type=submit]")
    page.wait_for_url(f"{live_server.url}{path}")

    assert page.locator("h1").inner_text() == "Annotators of Helpfulness"
    outlier = page.locator(f'tr[data-annotator="{careless.pk}"]')
    steady = page.locator(f'tr[data-annotator="{careful.pk}"]')
    assert "marked" in outlier.get_attribute("class")
    marks = outlier.locator("td").nth(7).inner_text()
    assert "τ against gold -1.00 (below 0.3)" in marks and "100% of orders sent untouched" in marks
    assert outlier.locator("td").nth(2).inner_text() == "-1.00 (4)"
    assert steady.get_attribute("class") is None and steady.locator("td").nth(7).inner_text() == ""
    assert outlier.get_by_text("excluded", exact=True).count() == 0
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "annotators-page.png"), full_page=True)

    # Exclude asks first; declined, nothing changes.
    asked = []

    def decline(dialog):
        asked.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", decline)
    outlier.get_by_role("button", name="Exclude").click()
    page.wait_for_timeout(500)
    assert asked == ["Leave careless's rankings out of exports and training?"]
    assert not AnnotatorExclusion.objects.exists()

    page.once("dialog", lambda dialog: dialog.accept())
    with page.expect_navigation():
        outlier.get_by_role("button", name="Exclude").click()
    assert page.url == f"{live_server.url}{path}"
    assert (
        "careless's rankings are left out of exports and training" in page.locator(".messages").inner_text()
    )
    assert outlier.locator("td").first.get_by_text("excluded", exact=True).is_visible()
    assert outlier.get_by_role("button", name="Exclude").count() == 0
    assert steady.get_by_role("button", name="Exclude").is_visible()  # only that row changed
    assert AnnotatorExclusion.objects.get(project=project).annotator == careless

    page.once("dialog", lambda dialog: dialog.accept())
    with page.expect_navigation():
        outlier.get_by_role("button", name="Include again").click()
    assert "careless's rankings count again" in page.locator(".messages").inner_text()
    assert outlier.get_by_text("excluded", exact=True).count() == 0
    assert outlier.get_by_role("button", name="Exclude").is_visible()
    assert "marked" in outlier.get_attribute("class")  # still worth a look: the figures did not change
    assert not AnnotatorExclusion.objects.exists()
