"""`make run`'s embedded defaults (SQLite, no Redis): the raw-SQL paths work there too."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import django, json
django.setup()
from django.core.management import call_command
from django.contrib.auth import get_user_model
from annotation.models import Project
from annotation.assignment import assignment_next, ranking_submit
from annotation.exports import export_snapshot_create

call_command("migrate", verbosity=0)
call_command("load_demo", verbosity=0)
project = Project.objects.get()
alice = get_user_model().objects.get(username="alice")
ranked = 0
while ranked < 3:
    assignment = assignment_next(annotator=alice, project=project)
    ranking_submit(assignment_id=assignment.pk, annotator=alice, order=[[a] for a in assignment.answer_order])
    ranked += 1
snapshot = export_snapshot_create(project=project, format="rankings", force=True)
rows = [json.loads(line) for line in snapshot.file.open("rb")]
people = sorted({r["annotator"].split("-")[0].split(":")[0] for r in rows})
print(json.dumps({"rows": len(rows), "people": people, "created_at": rows[-1]["created_at"]}))
"""


@pytest.mark.slow
def test_demo_ranking_and_export_work_on_sqlite(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "rewardlab.settings",
        "DEBUG": "1",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "CELERY_BROKER_URL": "filesystem://",
        "REWARDLAB_VAR_DIR": str(tmp_path),
        "MEDIA_ROOT": str(tmp_path / "media"),
        "MODEL_ROOT": str(tmp_path / "models"),
    }
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    # The demo's four imported rankings plus alice's three.
    assert summary["rows"] == 7
    assert summary["people"] == ["annotator", "import"]
    assert summary["created_at"].endswith("+00:00")
