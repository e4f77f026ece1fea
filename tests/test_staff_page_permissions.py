"""Staff pages ask for the Django model permission the API asks for the same data, and show a button or a
link only to those who may use what it leads to."""

from types import SimpleNamespace

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone

import annotation.urls
import training.urls
from tests.factories import STAFF_PERMISSIONS, ItemFactory, ProjectFactory, RankingFactory, UserFactory
from training.models import RewardModel, TrainingRun
from training.suites import evaluation_suite_create

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


def _page(user, url: str) -> str:
    response = _signed_in(user).get(url)
    assert response.status_code == 200
    return response.content.decode()


def _staff(*permissions: str):
    return UserFactory(is_staff=True, permissions=permissions)


def test_the_runs_page_shows_retrain_and_cancel_only_to_those_who_may_use_them(world):
    running = TrainingRun.objects.create(
        project=world.project, trigger="api", status="running", started_at=timezone.now()
    )
    url = reverse("training:project-runs", args=[world.project.pk])
    retrain = f'action="{reverse("training:project-retrain", args=[world.project.pk])}"'
    cancel = f'action="{reverse("training:run-cancel", args=[running.pk])}"'

    reader = _page(_staff("training.view_trainingrun"), url)
    starter = _page(_staff("training.view_trainingrun", "training.add_trainingrun"), url)
    canceller = _page(_staff("training.view_trainingrun", "training.change_trainingrun"), url)

    assert retrain not in reader and cancel not in reader
    assert retrain in starter and cancel not in starter
    assert cancel in canceller and retrain not in canceller
    # The versions' accuracy chart and the link to them are reward-model data.
    assert "Evaluation accuracy across versions" not in reader
    assert reverse("training:project-models", args=[world.project.pk]) not in reader
    versions_too = _page(_staff("training.view_trainingrun", "training.view_rewardmodel"), url)
    assert "Evaluation accuracy across versions" in versions_too


def test_the_runs_page_shows_retry_only_to_those_who_may_start_a_run(world):
    failed = TrainingRun.objects.create(project=world.project, trigger="api", status="failed", error="boom")
    url = reverse("training:project-runs", args=[world.project.pk]) + f"?run={failed.pk}"
    retry = f'action="{reverse("training:run-retry", args=[failed.pk])}"'

    assert retry not in _page(_staff("training.view_trainingrun"), url)
    assert retry in _page(_staff("training.view_trainingrun", "training.add_trainingrun"), url)


def test_the_versions_page_shows_activate_only_with_change_rewardmodel(world):
    url = reverse("training:project-models", args=[world.project.pk])
    activate = f'action="{reverse("training:model-activate", args=[world.version.pk])}"'

    reader = _page(_staff("training.view_rewardmodel"), url)
    changer = _page(_staff("training.view_rewardmodel", "training.change_rewardmodel"), url)

    assert activate not in reader and ">Activate<" not in reader
    assert activate in changer
    # Download is a read: it shows with the page. The suites' tables and the run links need their own.
    assert reverse("training:model-download", args=[world.version.pk]) in reader
    assert 'id="suites"' not in reader
    assert reverse("training:project-runs", args=[world.project.pk]) not in reader


def test_the_suites_page_shows_upload_rule_and_delete_each_with_its_permission(world):
    suite = evaluation_suite_create(
        project=world.project,
        upload=SimpleUploadedFile("s.jsonl", b'{"prompt": "p", "chosen": "a", "rejected": "b"}\n'),
        name="hh",
    )
    url = reverse("training:project-suites", args=[world.project.pk])
    upload = f'action="{reverse("training:suite-upload", args=[world.project.pk])}"'
    rule = f'action="{reverse("training:suite-rule", args=[suite.pk])}"'
    delete = f'action="{reverse("training:suite-delete", args=[suite.pk])}"'
    view = "training.view_evaluationsuite"

    reader = _page(_staff(view), url)
    uploader = _page(_staff(view, "training.add_evaluationsuite"), url)
    changer = _page(_staff(view, "training.change_evaluationsuite"), url)
    deleter = _page(_staff(view, "training.delete_evaluationsuite"), url)

    assert not any(action in reader for action in (upload, rule, delete))
    assert "informational" in reader  # the rule's state still shows, without its button
    assert upload in uploader and rule not in uploader and delete not in uploader
    assert rule in changer and upload not in changer and delete not in changer
    assert delete in deleter and upload not in deleter and rule not in deleter


def test_the_annotators_page_shows_exclude_only_with_change_project(world):
    url = reverse("project-annotators", args=[world.project.pk])

    reader = _page(_staff("annotation.view_ranking"), url)
    changer = _page(_staff("annotation.view_ranking", "annotation.change_project"), url)

    assert "ranker" in reader and ">Exclude<" not in reader and "/exclusion/" not in reader
    assert ">Exclude<" in changer


def test_the_progress_page_links_only_to_pages_the_user_may_open(world):
    url = reverse("project-progress", args=[world.project.pk])
    loop = reverse("training:project-loop", args=[world.project.pk])
    admin = reverse("admin:annotation_project_change", args=[world.project.pk])

    reader = _page(_staff("annotation.view_ranking"), url)
    everything = _page(_staff(*STAFF_PERMISSIONS), url)

    assert reverse("project-data", args=[world.project.pk]) in reader  # same permission
    assert loop not in reader and admin not in reader
    assert loop in everything and admin in everything


def test_the_data_page_lists_snapshots_only_with_view_exportsnapshot(world):
    url = reverse("project-data", args=[world.project.pk])

    reader = _page(_staff("annotation.view_ranking"), url)
    with_snapshots = _page(_staff("annotation.view_ranking", "annotation.view_exportsnapshot"), url)

    assert 'id="export-form"' in reader  # the downloads ask what the page asks
    assert 'id="snapshots-heading"' not in reader
    assert 'id="snapshots-heading"' in with_snapshots


def test_the_disputes_page_shows_the_models_rewards_only_with_view_rewardmodel(world):
    item = world.project.items.get()
    answer = item.answers.first()
    type(item).objects.filter(pk=item.pk).update(
        disputed_reason="annotators split", model_rewards={str(answer.pk): 1.234}
    )
    url = reverse("project-disputes", args=[world.project.pk])

    reader = _page(_staff("annotation.view_ranking"), url)
    with_models = _page(_staff("annotation.view_ranking", "training.view_rewardmodel"), url)

    assert "annotators split" in reader and "1.234" not in reader and "Model reward" not in reader
    assert "1.234" in with_models


def test_the_staff_home_links_only_to_pages_the_user_may_open(world):
    runs = reverse("training:project-runs", args=[world.project.pk])
    progress = reverse("project-progress", args=[world.project.pk])
    guidelines = reverse("staff-project-guidelines", args=[world.project.pk])

    viewer = _page(_staff("annotation.view_project"), "/staff/")
    everything = _page(_staff(*STAFF_PERMISSIONS), "/staff/")

    assert world.project.name in viewer
    assert not any(link in viewer for link in (runs, progress, guidelines))
    # Agreement is what view_ranking reads over the API, the active model what view_rewardmodel reads.
    assert "Agreement (τ-b)" not in viewer and "Active model" not in viewer
    assert all(link in everything for link in (runs, progress, guidelines))
    assert "Agreement (τ-b)" in everything and "Active model" in everything
    # The header's Training link too (every page's): only for those whom /training/ would not refuse.
    training = f'href="{reverse("training:index")}"'
    assert training not in viewer and training in everything
