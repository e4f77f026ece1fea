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
def rank():
    assignment = assignment_next(annotator=alice, project=project)
    ranking_submit(assignment_id=assignment.pk, annotator=alice, order=[[a] for a in assignment.answer_order])
    return assignment.item

project.gold_rate = 1.0  # the gold draw's SQL once (its ranking stays out of the export), then none
assert rank().gold_order is not None
project.gold_rate = 0.0
for _ in range(3):
    assert rank().gold_order is None
snapshot = export_snapshot_create(project=project, format="rankings", force=True)
rows = [json.loads(line) for line in snapshot.file.open("rb")]
people = sorted({r["annotator"].split("-")[0].split(":")[0] for r in rows})
print(json.dumps({"rows": len(rows), "people": people, "created_at": rows[-1]["created_at"]}))
"""


def make_run_env(tmp_path) -> dict[str, str]:
    """The environment of `make run` (SQLite, a filesystem broker), with its files under tmp_path."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "rewardlab.settings",
        "DEBUG": "1",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "CELERY_BROKER_URL": "filesystem://",
        "REWARDLAB_VAR_DIR": str(tmp_path),
        "MEDIA_ROOT": str(tmp_path / "media"),
        "MODEL_ROOT": str(tmp_path / "models"),
    }


@pytest.mark.slow
def test_demo_ranking_and_export_work_on_sqlite(tmp_path):
    env = make_run_env(tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    # The demo's four imported rankings plus alice's three (her gold item's ranking is not exported).
    assert summary["rows"] == 7
    assert summary["people"] == ["annotator", "import"]
    assert summary["created_at"].endswith("+00:00")


HOLD_THE_WRITE_LOCK = """
import django, sys, time
django.setup()
from django.core.management import call_command
from django.db import connection, transaction
call_command("migrate", verbosity=0)
with transaction.atomic():
    connection.cursor().execute("UPDATE django_migrations SET app = app")
    print("holding", flush=True)
    time.sleep(float(sys.argv[1]))
print("released", flush=True)
"""

WRITE_AND_READ_JOURNAL_MODE = """
import django, json, time
django.setup()
from django.db import connection
from annotation.models import Project
started = time.monotonic()
Project.objects.create(name="written while another process held the lock")
waited = time.monotonic() - started
mode = connection.cursor().execute("PRAGMA journal_mode").fetchone()[0]
print(json.dumps({"waited": waited, "journal_mode": mode}))
"""


@pytest.mark.slow
def test_on_sqlite_a_write_waits_for_a_long_transaction_instead_of_failing_as_locked(tmp_path):
    env = make_run_env(tmp_path)
    # Longer than sqlite3's own 5 s busy timeout, as a background import's transaction is.
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_WRITE_LOCK, "7"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        writer = subprocess.run(
            [sys.executable, "-c", WRITE_AND_READ_JOURNAL_MODE],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        holder.wait(60)
    assert writer.returncode == 0, writer.stderr[-3000:]
    outcome = json.loads(writer.stdout.strip().splitlines()[-1])
    assert outcome["waited"] > 3, "the write queued behind the other transaction"
    assert outcome["journal_mode"] == "wal"
