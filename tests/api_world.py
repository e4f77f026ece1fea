"""What the schema and fuzz tests call the API with: the app in-process, tokens, one row of each kind."""

import json
from dataclasses import dataclass, field

import pytest
import schemathesis
from django.core import signals
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from rest_framework.authtoken.models import Token

from annotation.assignment import assignment_next
from annotation.exports import export_snapshot_create
from annotation.models import ImportJob, Project
from tests.evaluation_setup import suite_rows
from tests.factories import STAFF_PERMISSIONS, ItemFactory, ProjectFactory, RankingFactory, UserFactory
from tests.training_setup import tiny_base_model_save
from training.models import RewardModel, SuiteResult, TrainingRun
from training.suites import evaluation_suite_create

SUITE_ROWS = "".join(json.dumps(row) + "\n" for row in suite_rows(count=4)).encode()


@dataclass
class ApiWorld:
    """Rows to name in paths, by the path parameter that names them, and a token per kind of caller."""

    staff: dict[str, str]
    annotator: dict[str, str]
    ids: dict[str, int] = field(default_factory=dict)

    def path_ids(self, path: str) -> dict[str, int]:
        """Existing rows for the parameters of `path` (`{id}` means the resource the path is under)."""
        resource = {
            "/api/projects/{id}/": "project_id",
            "/api/items/{id}/": "item_id",
            "/api/training/runs/{id}/": "run_id",
            "/api/training/models/{id}/": "model_id",
            "/api/training/suites/{id}/": "suite_id",
        }
        chosen = {}
        for name in ("project_id", "annotator_id", "assignment_id", "job_id", "snapshot_id"):
            if "{" + name + "}" in path:
                chosen[name] = self.ids[name]
        for prefix, name in resource.items():
            if path.startswith(prefix):
                chosen["id"] = self.ids[name]
        return chosen


@pytest.fixture
def api_app(db):
    """The WSGI app called in-process, on this test's database connection.

    Django closes the connection at the end of each request; in a test that would close the transaction
    the test's rows live in (Django's own test client disconnects the same handlers).
    """
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield get_wsgi_application()
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def api_schema(api_app):
    """The OpenAPI schema the app serves, loaded by schemathesis."""
    return schemathesis.openapi.from_wsgi("/api/schema/", api_app)


@pytest.fixture
def api_world(media, settings, tmp_path) -> ApiWorld:
    """A project with items, rankings, a lease, an import job, a snapshot, runs, an active tiny model and an
    evaluation suite."""
    settings.MODEL_ROOT = tmp_path / "models"
    staff = UserFactory(is_staff=True, permissions=STAFF_PERMISSIONS)
    annotator = UserFactory()
    project = ProjectFactory(flag_labels=["spam"])
    items = [ItemFactory(project=project, answers=3) for _ in range(3)]
    rankings = [RankingFactory(item=item) for item in items[:2]]
    lease = assignment_next(annotator=annotator, project=project)
    ProjectFactory(name="Paused", is_active=False)
    model = RewardModel.objects.create(
        project=project,
        version=1,
        artifact_path=str(tiny_base_model_save(tmp_path / "models" / "v1")),
        is_active=True,
    )
    world = ApiWorld(
        staff={"Authorization": f"Token {Token.objects.create(user=staff).key}"},
        annotator={"Authorization": f"Token {Token.objects.create(user=annotator).key}"},
    )
    world.ids = {
        "project_id": project.pk,
        "inactive_project_id": Project.objects.get(name="Paused").pk,
        "item_id": items[0].pk,
        "annotator_id": rankings[0].annotator_id,  # someone who ranked in the project
        "assignment_id": lease.pk,
        "job_id": ImportJob.objects.create(project=project, file_name="rows.jsonl").pk,
        "snapshot_id": export_snapshot_create(project=project, format="pairs").pk,
        "run_id": TrainingRun.objects.create(project=project, trigger="api", status="failed").pk,
        "model_id": model.pk,
        "suite_id": _suite_with_figures(project=project, model=model).pk,
    }
    return world


def _suite_with_figures(*, project, model):
    """An evaluation suite of four pairs, with the model's figures on it."""
    suite = evaluation_suite_create(
        project=project, upload=SimpleUploadedFile("suite.jsonl", SUITE_ROWS), name="suite"
    )
    subsets = {"good-vs-bad": 1.0, "good-vs-neutral": 0.5}
    SuiteResult.objects.create(
        reward_model=model,
        suite=suite,
        pairwise_accuracy=0.75,
        pairs=4,
        figures={"pairwise_accuracy": 0.75, "pairs": 4, "subsets": subsets},
    )
    return suite
