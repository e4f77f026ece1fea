"""The runs page in a real Chromium: the progress bar follows the run live, and the page shows the outcome."""

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.factories import STAFF_PERMISSIONS, ProjectFactory, UserFactory
from training.models import TrainingRun

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery staple"


def test_progress_bar_follows_a_running_run_and_the_page_shows_its_end(browser, live_server):
    staff = UserFactory(is_staff=True, permissions=STAFF_PERMISSIONS)
    run = TrainingRun.objects.create(
        project=ProjectFactory(),
        trigger="api",
        status="running",
        step=30,
        total_steps=120,
        loss_history=[[10, 0.69], [30, 0.5]],
        started_at=timezone.now(),
        heartbeat_at=timezone.now(),
    )
    path = reverse("training:project-runs", args=[run.project_id])
    page = browser.new_page()
    page.set_default_timeout(20_000)
    page.goto(f"{live_server.url}{path}")
    assert reverse("login") in page.url  # staff pages send strangers to the site's login form
    page.fill("#id_username", staff.username)
    page.fill("#id_password", PASSWORD)
    page.click("form button[type=submit]")
    page.wait_for_url(f"{live_server.url}{path}")
    bar = page.locator('[role="progressbar"]')
    assert bar.get_attribute("aria-valuenow") == "25"

    TrainingRun.objects.filter(pk=run.pk).update(
        step=90, loss_history=[[10, 0.69], [30, 0.5], [90, 0.3]], log_tail="epoch 2 done"
    )
    page.wait_for_function("() => document.querySelector('[role=progressbar]').ariaValueNow === '75'")
    assert "epoch 2 done" in page.locator('[data-field="log"]').inner_text()
    assert "loss 0.3000" in page.locator('[data-field="summary"]').inner_text()

    TrainingRun.objects.filter(pk=run.pk).update(status="succeeded", step=120, finished_at=timezone.now())
    # Once finished the page reloads itself, rendered by the server as a finished run.
    page.wait_for_function("() => document.getElementById('run')?.dataset.active === '0'")
    assert page.locator('[data-field="status"]').inner_text() == "Succeeded"
    assert page.locator('[role="progressbar"]').get_attribute("aria-valuenow") == "100"
    assert page.locator("form[action$='/cancel/']").count() == 0


def _log_in(page, live_server, path, staff):
    page.goto(f"{live_server.url}{path}")
    page.fill("#id_username", staff.username)
    page.fill("#id_password", PASSWORD)
    page.click("form button[type=submit]")
    page.wait_for_url(f"{live_server.url}{path}")


def test_the_runs_table_row_follows_the_live_run(browser, live_server):
    staff = UserFactory(is_staff=True, permissions=STAFF_PERMISSIONS)
    run = TrainingRun.objects.create(project=ProjectFactory(), trigger="api")
    path = reverse("training:project-runs", args=[run.project_id]) + f"?run={run.pk}"
    page = browser.new_page()
    page.set_default_timeout(20_000)
    _log_in(page, live_server, path, staff)
    row = page.locator(f'tr[data-run="{run.pk}"]')
    assert row.locator('[data-cell="progress"]').inner_text() == "0%"

    TrainingRun.objects.filter(pk=run.pk).update(
        status="running", step=10, total_steps=40, started_at=timezone.now(), heartbeat_at=timezone.now()
    )
    cell = f"tr[data-run='{run.pk}'] [data-cell=progress]"
    page.wait_for_function(f'() => document.querySelector("{cell}").textContent === "25%"')
    assert row.locator('[data-cell="status"]').inner_text() == "Running"


def test_cancel_asks_first_and_does_nothing_when_declined(browser, live_server):
    staff = UserFactory(is_staff=True, permissions=STAFF_PERMISSIONS)
    run = TrainingRun.objects.create(
        project=ProjectFactory(),
        trigger="api",
        status="running",
        started_at=timezone.now(),
        heartbeat_at=timezone.now(),
    )
    path = reverse("training:project-runs", args=[run.project_id])
    page = browser.new_page()
    page.set_default_timeout(20_000)
    _log_in(page, live_server, path, staff)
    asked = []

    def decline(dialog):
        asked.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", decline)
    page.click("form[action$='/cancel/'] button")
    page.wait_for_timeout(500)
    run.refresh_from_db()
    assert asked and f"Cancel run #{run.pk}?" in asked[0]
    assert run.cancel_requested_at is None

    page.once("dialog", lambda dialog: dialog.accept())
    with page.expect_navigation():
        page.click("form[action$='/cancel/'] button")
    run.refresh_from_db()
    assert run.cancel_requested_at is not None or run.status == "cancelled"


def test_activating_a_version_asks_first(browser, live_server, tmp_path):
    from training.models import RewardModel

    staff = UserFactory(is_staff=True, permissions=STAFF_PERMISSIONS)
    project = ProjectFactory()
    RewardModel.objects.create(project=project, version=1, artifact_path=str(tmp_path), is_active=True)
    second = RewardModel.objects.create(project=project, version=2, artifact_path=str(tmp_path))
    path = reverse("training:project-models", args=[project.pk])
    page = browser.new_page()
    page.set_default_timeout(20_000)
    _log_in(page, live_server, path, staff)
    asked = []

    def decline(dialog):
        asked.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", decline)
    page.click(f"form[action$='/{second.pk}/activate/'] button")
    page.wait_for_timeout(500)
    second.refresh_from_db()

    assert asked and "Make version 2 the active model" in asked[0]
    assert not second.is_active
