"""Staff pages ask for the Django model permission the API asks for the same data."""

from types import SimpleNamespace

import pytest
from django.test import Client
from django.urls import reverse

import annotation.urls
import training.urls
from tests.factories import STAFF_PERMISSIONS, ItemFactory, ProjectFactory, RankingFactory, UserFactory
from training.models import RewardModel, TrainingRun

pytestmark = pytest.mark.django_db

# Every page staff read (GET), the object its URL names and the one permission it asks for, as the API
# asks it for the same data (annotation/api/, training/api.py, training/api_suites.py).
PAGES = [
    ("staff-home", None, "annotation.view_project"),
    ("staff-project-guidelines", "project", "annotation.change_project"),  # the form that edits them
    ("project-progress", "project", "annotation.view_ranking"),
    ("project-data", "project", "annotation.view_ranking"),
    ("project-disputes", "project", "annotation.view_ranking"),
    ("project-annotators", "project", "annotation.view_ranking"),
    ("training:index", None, "training.view_trainingrun"),
    ("training:project-runs", "project", "training.view_trainingrun"),
    ("training:run-progress", "run", "training.view_trainingrun"),
    ("training:project-models", "project", "training.view_rewardmodel"),
    ("training:versions-compare", "project", "training.view_rewardmodel"),
    ("training:model-download", "version", "training.view_rewardmodel"),
    ("training:project-loop", "project", "training.view_rewardmodel"),
    ("training:project-suites", "project", "training.view_evaluationsuite"),
]
# Buttons: POST only, each with its own permission_required (tests/test_training_pages.py and others).
ACTIONS = {
    "project-annotator-exclusion",
    "training:project-retrain",
    "training:run-cancel",
    "training:run-retry",
    "training:model-activate",
    "training:suite-upload",
    "training:suite-rule",
    "training:suite-delete",
}
ANNOTATOR_PAGES = {"home", "rank", "my-rankings"}


@pytest.fixture
def world(tmp_path, media):
    """A project with a ranking, a finished run and the version it produced (its files on disk)."""
    project = ProjectFactory(name="Permissions")
    RankingFactory(item=ItemFactory(project=project), annotator=UserFactory(username="ranker"))
    run = TrainingRun.objects.create(project=project, trigger="admin", status="succeeded")
    directory = tmp_path / "v1"
    directory.mkdir()
    (directory / "config.json").write_text("{}")
    version = RewardModel.objects.create(
        project=project, version=1, training_run=run, artifact_path=str(directory), pairwise_accuracy=0.75
    )
    return SimpleNamespace(project=project, run=run, version=version)


def _url(world, name: str, target: str | None) -> str:
    return reverse(name, args=[getattr(world, target).pk] if target else [])


def _signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_table_names_every_staff_page():
    names = {p.name for p in annotation.urls.urlpatterns}
    names |= {f"training:{p.name}" for p in training.urls.urlpatterns}
    names |= {"staff-home", "staff-project-guidelines"}

    assert names - ANNOTATOR_PAGES - ACTIONS == {name for name, _, _ in PAGES}


def test_the_buttons_answer_only_a_post(world):
    # What the table leaves out as a button must show nothing on a GET, even to a superuser.
    client = _signed_in(UserFactory(is_staff=True, is_superuser=True))
    objects = {
        "project-annotator-exclusion": [world.project.pk, world.version.pk],
        "training:project-retrain": [world.project.pk],
        "training:suite-upload": [world.project.pk],
        "training:model-activate": [world.version.pk],
        "training:suite-rule": [1],
        "training:suite-delete": [1],
    }
    for name in ACTIONS:
        url = reverse(name, args=objects.get(name, [world.run.pk]))
        assert client.get(url).status_code == 405, name


@pytest.mark.parametrize(("name", "target", "permission"), PAGES, ids=[page[0] for page in PAGES])
def test_a_staff_page_needs_the_permission_the_api_asks_for(world, name, target, permission):
    url = _url(world, name, target)
    others = [p for p in STAFF_PERMISSIONS if p != permission]

    without_any = _signed_in(UserFactory(is_staff=True)).get(url)
    with_all_others = _signed_in(UserFactory(is_staff=True, permissions=others)).get(url)
    with_it = _signed_in(UserFactory(is_staff=True, permissions=[permission])).get(url)

    assert without_any.status_code == 403
    assert with_all_others.status_code == 403
    assert with_it.status_code == 200, with_it.content[:500]


@pytest.mark.parametrize(("name", "target", "permission"), PAGES, ids=[page[0] for page in PAGES])
def test_annotators_are_refused_and_visitors_sent_to_log_in(world, name, target, permission):
    url = _url(world, name, target)
    annotator = UserFactory(permissions=[permission])  # a permission without is_staff opens nothing

    assert _signed_in(annotator).get(url).status_code == 403
    visitor = Client().get(url)
    assert visitor.status_code == 302 and "/accounts/login/" in visitor["Location"]
