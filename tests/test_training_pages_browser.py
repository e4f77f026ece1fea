"""The runs page in a real Chromium: the progress bar follows the run live, and the page shows the outcome."""

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.factories import ProjectFactory, UserFactory
from training.models import TrainingRun

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery staple"


def test_progress_bar_follows_a_running_run_and_the_page_shows_its_end(browser, live_server):
    staff = UserFactory(is_staff=True)
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
