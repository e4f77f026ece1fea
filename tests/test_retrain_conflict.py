"""A second retrain while a run is queued is refused with 409 (API) or a message (page), on both databases."""

import json
import subprocess
import sys

import pytest
from django.db import IntegrityError

from tests.factories import ProjectFactory
from tests.test_embedded_defaults import ROOT, make_run_env
from training.models import TrainingRun
from training.runs import TrainingRunConflict, training_run_create

RUNS = "/api/training/runs/"

SQLITE_SCRIPT = """
import django, json
django.setup()
from django.core.management import call_command
from django.test.utils import setup_test_environment
setup_test_environment()
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient
from annotation.models import Project
from training.models import TrainingRun

call_command("migrate", verbosity=0)
admin = get_user_model().objects.create_superuser("boss", "boss@example.org", "pw")
project = Project.objects.create(name="P")
api = APIClient()
api.force_authenticate(admin)
first = api.post("/api/training/runs/", {"project": project.pk}, format="json")
second = api.post("/api/training/runs/", {"project": project.pk}, format="json")
page = Client()
page.force_login(admin)
button = page.post(f"/training/projects/{project.pk}/retrain/", follow=True)
print(json.dumps({
    "first": first.status_code, "second": second.status_code, "detail": second.json()["detail"],
    "page": button.status_code, "page_messages": [str(m) for m in button.context["messages"]],
    "runs": TrainingRun.objects.count(),
}))
"""


@pytest.mark.slow
def test_second_retrain_is_409_and_a_page_message_on_sqlite(tmp_path):
    env = make_run_env(tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", SQLITE_SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["first"] == 201
    assert summary["second"] == 409
    assert "already has training run #" in summary["detail"]
    assert summary["page"] == 200
    assert any("already has training run #" in m for m in summary["page_messages"])
    assert summary["runs"] == 1


@pytest.mark.django_db
def test_second_retrain_on_the_runs_page_says_why_on_postgresql(staff_client, client, staff):
    project = ProjectFactory()
    first = staff_client.post(RUNS, {"project": project.pk}, format="json")
    client.force_login(staff)

    page = client.post(f"/training/projects/{project.pk}/retrain/", follow=True)

    assert first.status_code == 201
    assert any("already has training run #" in str(m) for m in page.context["messages"])
    assert TrainingRun.objects.filter(project=project).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_run_that_slips_past_the_check_is_refused_by_the_constraint_as_a_conflict(monkeypatch):
    project = ProjectFactory()
    TrainingRun.objects.create(project=project, trigger="api", arguments={})
    # The check finds nothing (as when another request inserts between the check and the insert).
    real_filter = TrainingRun.objects.filter
    calls = []

    def filter_blind_once(*args, **kwargs):
        calls.append(kwargs)
        return real_filter(pk=-1) if len(calls) == 1 else real_filter(*args, **kwargs)

    monkeypatch.setattr(TrainingRun.objects, "filter", filter_blind_once)

    with pytest.raises(TrainingRunConflict) as refused:
        training_run_create(project=project, trigger="api")

    assert isinstance(refused.value.__cause__, IntegrityError)
