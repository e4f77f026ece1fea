"""The versions page and the side-by-side comparison of two versions, rendered by the server."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from tests.evaluation_setup import suite_rows, version_with_figures
from tests.factories import ProjectFactory
from tests.training_setup import learnable_items_create, quality
from training.models import SuiteResult
from training.suites import evaluation_suite_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_browser(staff):
    client = Client()
    client.force_login(staff)
    return client


@pytest.fixture
def two_versions(media, tmp_path):
    """v1 rewards length, v2 reads the marker words; both evaluated on the same 12 items, a suite each."""
    project = ProjectFactory()
    items = learnable_items_create(project=project, count=12)
    v1 = version_with_figures(project=project, version=1, items=items, reward=len, directory=tmp_path / "v1")
    v2 = version_with_figures(
        project=project, version=2, items=items, reward=quality, directory=tmp_path / "v2", is_active=True
    )
    text = "".join(json.dumps(row) + "\n" for row in suite_rows(count=4))
    suite = evaluation_suite_create(
        project=project, upload=SimpleUploadedFile("rb.jsonl", text.encode()), name="reward-bench-like"
    )
    for version, accuracies in ((v1, (0.5, 0.25)), (v2, (1.0, 0.75))):
        SuiteResult.objects.create(
            reward_model=version,
            suite=suite,
            pairwise_accuracy=sum(accuracies) / 2,
            pairs=4,
            figures={
                "pairwise_accuracy": sum(accuracies) / 2,
                "subsets": dict(zip(("good-vs-bad", "good-vs-neutral"), accuracies, strict=True)),
            },
        )
    return project, items, v1, v2


def test_compare_page_shows_every_figure_of_both_versions_and_the_flipped_pairs(staff_browser, two_versions):
    project, items, v1, v2 = two_versions

    response = staff_browser.get(reverse("training:versions-compare", args=[project.pk]), {"a": 1, "b": 2})

    assert response.status_code == 200
    page = response.content.decode()
    for label in (
        "Pairwise accuracy",
        "95% interval",
        "Human ceiling",
        "Length correlation",
        "Accuracy, longer answer preferred",
        "Accuracy, shorter answer preferred",
        "Expected calibration error",
    ):
        assert label in page
    rows = {row.label: row for row in response.context["rows"]}
    assert rows["Pairwise accuracy"].b == "1.000"  # v2 orders every pair as the annotators did
    assert rows["Length correlation"].a == "1.000"  # v1's reward is the length
    assert rows["Human ceiling"].a.startswith("1.000")  # both annotators rank every item alike
    assert page.count('<svg class="chart"') == 3
    assert "Calibration" in page and "Reward against answer length" in page
    flips = response.context["flips"]
    assert flips["flipped"] > 0 and flips["now_right"] == flips["flipped"]
    first = flips["pairs"][0]
    assert first.better and first.worse and first.prompt and first.margin_a <= 0 < first.margin_b
    assert first.better[:40] in page
    # The suite, per subset, for both versions.
    assert [(name, values) for name, values in response.context["suite_tables"][0].rows] == [
        ("all", [0.375, 0.875]),
        ("good-vs-bad", [0.5, 1.0]),
        ("good-vs-neutral", [0.25, 0.75]),
    ]


def test_compare_defaults_to_the_two_newest_and_refuses_an_unknown_version(staff_browser, two_versions):
    project, *_ = two_versions
    url = reverse("training:versions-compare", args=[project.pk])

    response = staff_browser.get(url)
    assert (response.context["a"].version, response.context["b"].version) == (1, 2)
    assert staff_browser.get(url, {"a": "9"}).status_code == 404
    assert staff_browser.get(url, {"a": "x"}).status_code == 404
    # Given the other way round, the older version is still shown first.
    assert staff_browser.get(url, {"a": 2, "b": 1}).context["a"].version == 1


def test_versions_page_shows_each_versions_figures_and_suite_accuracy_per_subset(staff_browser, two_versions):
    project, _, v1, v2 = two_versions

    response = staff_browser.get(reverse("training:project-models", args=[project.pk]))

    page = response.content.decode()
    assert response.status_code == 200
    assert "Human ceiling" in page and "Length ρ" in page and "ECE" in page
    assert 'data-suite="reward-bench-like"' in page
    table = response.context["suite_tables"][0]
    assert dict(table.rows)["good-vs-neutral"] == [0.25, 0.75]
    assert "Compare versions" in page


def test_annotators_cannot_see_the_comparison(annotator, two_versions):
    project, *_ = two_versions
    client = Client()
    client.force_login(annotator)

    assert client.get(reverse("training:versions-compare", args=[project.pk])).status_code == 403
    assert client.get(reverse("training:project-suites", args=[project.pk])).status_code == 403


def test_compare_without_versions_goes_back_to_the_versions_page(staff_browser, media):
    project = ProjectFactory()

    response = staff_browser.get(reverse("training:versions-compare", args=[project.pk]))

    assert response.status_code == 302
    assert response["Location"] == reverse("training:project-models", args=[project.pk])
