"""Staff pages for training and the admin's "Retrain now" action."""

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.factories import ProjectFactory, UserFactory
from tests.training_setup import tiny_base_model_save
from training.charts import line_chart_svg
from training.models import RewardModel, TrainingRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_browser(staff):
    client = Client()
    client.force_login(staff)
    return client


@pytest.fixture
def running_run():
    return TrainingRun.objects.create(
        project=ProjectFactory(),
        trigger="admin",
        status="running",
        step=30,
        total_steps=120,
        epoch=0.5,
        loss_history=[[10, 0.69], [20, 0.52], [30, 0.41]],
        log_tail="train:  25%|██▌       | 30/120",
        started_at=timezone.now(),
        heartbeat_at=timezone.now(),
    )


def test_runs_page_shows_live_progress_loss_curve_log_and_cancel(staff_browser, running_run):
    response = staff_browser.get(reverse("training:project-runs", args=[running_run.project_id]))

    html = response.content.decode()
    assert response.status_code == 200
    assert 'aria-valuenow="25"' in html and "width: 25%" in html
    assert reverse("training:run-progress", args=[running_run.pk]) in html
    assert '<svg class="chart"' in html and "Training loss of run" in html
    assert "30/120" in html
    assert reverse("training:run-cancel", args=[running_run.pk]) in html
    assert reverse("training:run-retry", args=[running_run.pk]) not in html


def test_progress_json_is_what_the_page_polls(staff_browser, running_run):
    state = staff_browser.get(reverse("training:run-progress", args=[running_run.pk])).json()

    assert state["status"] == "running" and state["is_active"] is True
    assert (state["step"], state["total_steps"], state["percent"]) == (30, 120, 25)
    assert state["loss"] == 0.41
    assert state["loss_svg"].startswith("<svg")


def test_training_pages_refuse_annotators_and_send_visitors_to_log_in(annotator, running_run):
    runs_page = reverse("training:project-runs", args=[running_run.project_id])
    progress_poll = reverse("training:run-progress", args=[running_run.pk])
    signed_in = Client()
    signed_in.force_login(annotator)

    refused = signed_in.get(runs_page)
    assert refused.status_code == 403
    assert "This page is for staff only." in refused.content.decode()
    assert signed_in.get(progress_poll).status_code == 403
    visitor = Client().get(runs_page)
    assert visitor.status_code == 302 and "/accounts/login/" in visitor["Location"]


def test_cancel_button_asks_the_worker_to_stop_and_retry_button_requeues(staff_browser, running_run):
    cancel = staff_browser.post(reverse("training:run-cancel", args=[running_run.pk]), follow=True)
    running_run.refresh_from_db()
    assert running_run.cancel_requested_at is not None
    assert running_run.status == "running"  # the worker stops it; the page only asks
    assert "stopping the training process" in cancel.content.decode()

    TrainingRun.objects.filter(pk=running_run.pk).update(status="failed", error="boom")
    response = staff_browser.post(reverse("training:run-retry", args=[running_run.pk]))

    retry = TrainingRun.objects.get(retry_of=running_run)
    assert retry.status == "queued"
    assert response.status_code == 302 and response["Location"].endswith(f"?run={retry.pk}")


def test_retrain_button_refuses_a_second_run_with_the_reason(staff_browser, running_run):
    response = staff_browser.post(
        reverse("training:project-retrain", args=[running_run.project_id]), follow=True
    )

    assert f"already has training run #{running_run.pk} running" in response.content.decode()
    assert TrainingRun.objects.filter(project=running_run.project).count() == 1


def test_admin_retrain_now_action_queues_a_run_per_project():
    admin_browser = Client()
    admin_browser.force_login(UserFactory(is_staff=True, is_superuser=True))
    first, second = ProjectFactory(), ProjectFactory()
    changelist = reverse("admin:annotation_project_changelist")

    response = admin_browser.post(
        changelist, {"action": "retrain_now", "_selected_action": [first.pk, second.pk]}, follow=True
    )

    assert response.status_code == 200
    runs = TrainingRun.objects.filter(trigger="admin", status="queued")
    assert sorted(runs.values_list("project_id", flat=True)) == [first.pk, second.pk]
    again = admin_browser.post(
        changelist, {"action": "retrain_now", "_selected_action": [first.pk]}, follow=True
    )
    assert "already has training run" in again.content.decode()


def test_models_page_activates_a_version_and_downloads_it(staff_browser, tmp_path):
    project = ProjectFactory()
    base = tiny_base_model_save(tmp_path / "base")
    first = RewardModel.objects.create(
        project=project, version=1, artifact_path=str(base), pairwise_accuracy=0.8, is_active=True
    )
    second = RewardModel.objects.create(
        project=project, version=2, artifact_path=str(base), pairwise_accuracy=0.7, not_active_reason="worse"
    )

    page = staff_browser.get(reverse("training:project-models", args=[project.pk])).content.decode()
    staff_browser.post(reverse("training:model-activate", args=[second.pk]))
    download = staff_browser.get(reverse("training:model-download", args=[first.pk]))

    assert "worse" in page and "Pairwise accuracy on the evaluation split" in page
    assert list(RewardModel.objects.filter(is_active=True)) == [second]
    assert download.status_code == 200 and download["Content-Type"] == "application/gzip"


def test_charts_escape_their_labels():
    svg = line_chart_svg(points=[(1, 0.5), (2, 0.75)], title="<script>x</script>", x_label="a&b", y_label="y")

    assert "<script>" not in svg and "&lt;script&gt;" in svg and "a&amp;b" in svg


def test_index_lists_projects_with_their_latest_run_and_active_version(staff_browser, running_run, tmp_path):
    RewardModel.objects.create(
        project=running_run.project,
        version=3,
        artifact_path=str(tmp_path),
        pairwise_accuracy=0.875,
        is_active=True,
    )

    html = staff_browser.get(reverse("training:index")).content.decode()

    assert running_run.project.name in html
    assert f"#{running_run.pk}" in html and "running" in html
    assert "v3 · accuracy 0.875" in html


def test_runs_page_shows_the_chosen_run_and_not_another_projects(staff_browser, running_run):
    older = TrainingRun.objects.create(
        project=running_run.project, trigger="api", status="failed", error="CUDA out of memory"
    )
    other = TrainingRun.objects.create(project=ProjectFactory(), trigger="api")
    url = reverse("training:project-runs", args=[running_run.project_id])

    html = staff_browser.get(url, {"run": older.pk}).content.decode()

    assert f"Run #{older.pk}" in html and "CUDA out of memory" in html
    assert reverse("training:run-retry", args=[older.pk]) in html
    assert staff_browser.get(url, {"run": other.pk}).status_code == 404


def test_a_run_parameter_that_is_no_run_id_is_404_not_500(staff_browser, running_run):
    url = reverse("training:project-runs", args=[running_run.project_id])

    for value in ("²", "x", "-1", "9" * 5000, str(2**63)):
        assert staff_browser.get(url, {"run": value}).status_code == 404, value
    assert staff_browser.get(url, {"run": ""}).status_code == 200  # no choice: the latest run


def test_the_page_buttons_need_the_permissions_the_api_asks_for(running_run, tmp_path):
    project = running_run.project
    version = RewardModel.objects.create(
        project=project, version=1, artifact_path=str(tiny_base_model_save(tmp_path / "v1"))
    )
    buttons = {
        reverse("training:project-retrain", args=[project.pk]): "training.add_trainingrun",
        reverse("training:run-cancel", args=[running_run.pk]): "training.change_trainingrun",
        reverse("training:run-retry", args=[running_run.pk]): "training.add_trainingrun",
        reverse("training:model-activate", args=[version.pk]): "training.change_rewardmodel",
    }
    unprivileged = Client()
    unprivileged.force_login(UserFactory(is_staff=True))

    for url, permission in buttons.items():
        assert unprivileged.post(url).status_code == 403, url
        allowed = Client()
        allowed.force_login(UserFactory(is_staff=True, permissions=[permission]))
        assert allowed.post(url).status_code == 302, url
    assert unprivileged.get(reverse("training:model-download", args=[version.pk])).status_code == 403
