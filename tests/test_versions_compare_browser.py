"""The comparison of two versions in a real Chromium: figures side by side, the three plots, the flipped
pairs with their texts, and choosing other versions with the form."""

import json
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from tests.evaluation_setup import suite_rows, version_with_figures
from tests.factories import STAFF_PERMISSIONS, ProjectFactory, UserFactory
from tests.training_setup import learnable_items_create, quality
from training.models import SuiteResult
from training.suites import evaluation_suite_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery staple"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def test_two_versions_side_by_side_with_plots_and_flipped_pairs(browser, live_server, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    staff = UserFactory(is_staff=True, permissions=STAFF_PERMISSIONS)
    project = ProjectFactory()
    items = learnable_items_create(project=project, count=16)
    versions = [
        version_with_figures(project=project, version=1, items=items, reward=len, directory=tmp_path / "v1"),
        version_with_figures(
            project=project, version=2, items=items, reward=quality, directory=tmp_path / "v2", is_active=True
        ),
        version_with_figures(
            project=project, version=3, items=items, reward=lambda t: -quality(t), directory=tmp_path / "v3"
        ),
    ]
    text = "".join(json.dumps({**row, "subset": "helpful"}) + "\n" for row in suite_rows(count=4))
    suite = evaluation_suite_create(
        project=project, upload=SimpleUploadedFile("hh.jsonl", text.encode()), name="hh"
    )
    for version, accuracy in zip(versions, (0.5, 1.0, 0.0), strict=True):
        figures = {"pairwise_accuracy": accuracy, "subsets": {"helpful": accuracy}}
        SuiteResult.objects.create(
            reward_model=version, suite=suite, pairwise_accuracy=accuracy, figures=figures
        )
    path = reverse("training:versions-compare", args=[project.pk])
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(20_000)
    page.goto(f"{live_server.url}{path}?a=1&b=2")
    page.fill("#id_username", staff.username)
    page.fill("#id_password", PASSWORD)
    page.click("form button[type=submit]")
    page.wait_for_url(f"{live_server.url}{path}?a=1&b=2")

    assert page.locator("h1").inner_text() == "Version 1 and version 2 side by side"
    figures = page.locator("#figures")
    for label in ("95% interval", "Human ceiling", "Length correlation", "Expected calibration error"):
        assert figures.get_by_role("rowheader", name=label).is_visible()
    length_row = figures.locator("tr", has=page.get_by_role("rowheader", name="Length correlation"))
    assert length_row.locator("td").nth(0).inner_text() == "1.000"  # v1 rewards length itself
    for chart in ("accuracy", "calibration", "length"):
        svg = page.locator(f'[data-chart="{chart}"] svg[role="img"]')
        assert svg.is_visible() and svg.bounding_box()["width"] > 300
        assert svg.locator("circle").count() > 0
    assert page.locator('[data-chart="calibration"] .guide').count() == 1  # the y = x of a calibrated model
    flips = page.locator("#flips")
    assert "now right" in flips.locator('[data-field="flip-summary"]').inner_text()
    first = flips.locator("table.flips tbody tr").first
    assert first.is_visible()
    assert first.locator("td").nth(2).inner_text().strip()  # the preferred answer's text
    page.screenshot(path=str(ARTIFACTS / "versions-compare.png"), full_page=True)

    page.select_option('select[name="b"]', "3")
    page.click(".compare-choice button[type=submit]")
    page.wait_for_url(f"{live_server.url}{path}?a=1&b=3")
    assert page.locator("h1").inner_text() == "Version 1 and version 3 side by side"
    # v3 orders every pair the wrong way round: what v1 got right by length it now gets wrong.
    summary = page.locator('[data-field="flip-summary"]').inner_text()
    assert "0 now right" in summary

    # The versions page: each version's figures, and the suite per subset across versions.
    page.goto(f"{live_server.url}{reverse('training:project-models', args=[project.pk])}")
    table = page.locator('table.suite-table[data-suite="hh"]')
    assert table.get_by_role("rowheader", name="helpful").is_visible()
    helpful = table.locator("tr", has=page.get_by_role("rowheader", name="helpful")).locator("td")
    assert [helpful.nth(k).inner_text() for k in range(3)] == ["0.500", "1.000", "0.000"]
    page.screenshot(path=str(ARTIFACTS / "versions-page.png"), full_page=True)
