"""Export snapshots: written atomically, skipped when nothing changed, pruned, and run by beat + a worker."""

import hashlib
import importlib
import json
import subprocess
import sys
import time

import pytest
from django.apps import apps as django_apps
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from annotation import exports
from annotation.exports import containers, export_snapshot_create, export_snapshot_prune, reading
from annotation.models import ExportSnapshot
from annotation.tasks import export_snapshot_write
from tests.conftest import child_process_env, files_under
from tests.factories import ItemFactory, ProjectFactory, RankingFactory

pytestmark = pytest.mark.django_db

schedule_migration = importlib.import_module("annotation.migrations.0002_export_snapshot_schedule")
container_migration = importlib.import_module("annotation.migrations.0005_export_snapshot_container")


def test_a_snapshot_records_its_file_rows_items_and_checksum(media):
    project = ProjectFactory()
    RankingFactory.create_batch(2, item__project=project)
    snapshot = export_snapshot_create(project=project, format="pairs", filters={"min_annotators": 1})
    content = (media / snapshot.file.name).read_bytes()
    assert snapshot.file.name.startswith("exports/") and snapshot.file.name.endswith(".jsonl")
    assert snapshot.container == ExportSnapshot.Container.JSONL
    assert snapshot.source_fingerprint == exports.export_source_fingerprint(project=project)
    assert (snapshot.row_count, snapshot.item_count) == (6, 2)
    assert len(content.splitlines()) == 6
    assert snapshot.sha256 == hashlib.sha256(content).hexdigest()
    assert snapshot.filters == exports.ExportFilters(min_annotators=1).as_dict()
    assert files_under(media) == [snapshot.file.name]


def test_nothing_is_written_when_nothing_changed_unless_forced(media):
    project = ProjectFactory()
    item = ItemFactory(project=project)
    RankingFactory(item=item)
    first = export_snapshot_create(project=project, format="rankings")
    assert export_snapshot_create(project=project, format="rankings") is None
    forced = export_snapshot_create(project=project, format="rankings", force=True)
    assert forced is not None and forced.sha256 == first.sha256
    RankingFactory(item=item)
    assert export_snapshot_create(project=project, format="rankings").row_count == 2
    # Other filters or another container are other snapshots.
    assert export_snapshot_create(project=project, format="rankings", filters={"include_imported": False})
    assert export_snapshot_create(project=project, format="rankings", container="jsonl.gz")


def test_the_rankings_snapshot_for_training_includes_imported_rankings_by_default(media):
    from annotation.models import Ranking
    from tests.factories import ImportBatchFactory

    project = ProjectFactory()
    item = ItemFactory(project=project)
    answers = list(item.answers.order_by("position"))
    Ranking.objects.create(
        item=item,
        source=Ranking.Source.IMPORT,
        import_batch=ImportBatchFactory(project=project),
        order=[[answers[1].pk], [answers[0].pk]],
    )
    snapshot = export_snapshot_create(project=project, format="rankings", filters={}, force=True)
    rows = [json.loads(line) for line in (media / snapshot.file.name).read_text().splitlines()]
    assert [row["annotator"] for row in rows] == [f"import:{item.rankings.get().import_batch_id}"]


def test_a_crash_mid_write_leaves_neither_a_file_nor_a_record(media, monkeypatch):
    project = ProjectFactory()
    RankingFactory.create_batch(3, item__project=project)
    real_items = exports.export_items

    def failing_items(**kwargs):
        for number, item in enumerate(real_items(**kwargs)):
            if number == 2:
                raise RuntimeError("disk on fire")
            yield item

    monkeypatch.setattr(reading, "export_items", failing_items)
    monkeypatch.setattr(containers, "JSONL_FLUSH_BYTES", 1)  # so that bytes hit the disk before the crash
    with pytest.raises(RuntimeError, match="disk on fire"):
        export_snapshot_create(project=project, format="rankings")
    assert not ExportSnapshot.objects.exists()
    assert files_under(media) == []


def test_prune_keeps_the_newest_snapshots_of_each_format_and_deletes_their_files(
    media, django_capture_on_commit_callbacks
):
    project = ProjectFactory()
    RankingFactory(item__project=project)
    pairs = [export_snapshot_create(project=project, format="pairs", force=True) for _ in range(3)]
    rankings = export_snapshot_create(project=project, format="rankings")
    with django_capture_on_commit_callbacks(execute=True):
        assert export_snapshot_prune(keep=2) == 1
    assert set(ExportSnapshot.objects.values_list("pk", flat=True)) == {pairs[1].pk, pairs[2].pk, rankings.pk}
    assert not (media / pairs[0].file.name).exists()
    assert (media / pairs[2].file.name).exists()


def test_the_migration_schedules_the_snapshot_task_hourly_on_the_default_queue():
    task = PeriodicTask.objects.get(name=schedule_migration.NAME)
    assert task.task == "annotation.tasks.export_snapshots_write"
    assert (task.interval.every, task.interval.period) == (1, "hours")
    assert task.queue == "default" and task.enabled


@pytest.mark.celery_worker
@pytest.mark.slow
def test_celery_beat_and_a_real_worker_write_snapshots_of_active_projects_only_when_changed(
    live_celery_worker, tmp_path
):
    media = tmp_path / "worker-media"
    active = ProjectFactory(name="Active")
    RankingFactory.create_batch(2, item__project=active)
    ProjectFactory(name="Paused", is_active=False)
    RankingFactory(item__project__name="Also paused", item__project__is_active=False)

    # The schedule the migration creates (flushed by earlier transactional tests, so made again), run every
    # second for the test; other entries are switched off so that beat sends only this one.
    schedule_migration.create_schedule(django_apps, None)
    PeriodicTask.objects.exclude(name=schedule_migration.NAME).update(enabled=False)
    every_second, _ = IntervalSchedule.objects.get_or_create(every=1, period="seconds")
    PeriodicTask.objects.filter(name=schedule_migration.NAME).update(interval=every_second)

    live_celery_worker(queues="default", MEDIA_ROOT=str(media))
    beat = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "rewardlab", "beat", "--loglevel", "info", "--pidfile="],
        env=child_process_env(MEDIA_ROOT=str(media)),
        stdout=(tmp_path / "beat.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and ExportSnapshot.objects.count() < len(exports.FORMATS):
            time.sleep(0.5)
        # Beat keeps firing every second; with no change, no further snapshot appears.
        time.sleep(4)
    finally:
        beat.terminate()
        beat.wait(timeout=20)
    snapshots = list(ExportSnapshot.objects.all())
    log = (tmp_path / "beat.log").read_text()
    assert "annotation.tasks.export_snapshots_write" in log, log
    assert sorted(s.format for s in snapshots) == sorted(exports.FORMATS)
    assert {s.project.name for s in snapshots} == {"Active"}
    from annotation.models import AgreementFigures

    # The same task keeps the agreement figures of the active project up to date.
    assert list(AgreementFigures.objects.values_list("project__name", flat=True)) == ["Active"]
    pairs = next(s for s in snapshots if s.format == "pairs")
    assert pairs.row_count == 6
    assert (media / pairs.file.name).read_bytes().count(b"\n") == 6


def test_prune_keeps_a_snapshot_a_training_run_was_made_from(media, django_capture_on_commit_callbacks):
    from training.models import TrainingRun

    project = ProjectFactory()
    RankingFactory(item__project=project)
    used = export_snapshot_create(project=project, format="rankings", force=True)
    TrainingRun.objects.create(project=project, trigger=TrainingRun.Trigger.values[0], export_snapshot=used)
    newer = [export_snapshot_create(project=project, format="rankings", force=True) for _ in range(2)]
    with django_capture_on_commit_callbacks(execute=True):
        assert export_snapshot_prune(keep=1) == 1
    assert set(ExportSnapshot.objects.values_list("pk", flat=True)) == {used.pk, newer[1].pk}
    assert (media / used.file.name).exists()


def test_the_hourly_run_reads_each_projects_fingerprint_once_and_writes_nothing_when_unchanged(media):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    projects = [ProjectFactory(), ProjectFactory()]
    for project in projects:
        RankingFactory.create_batch(2, item__project=project)
    assert len(exports.export_snapshots_write_all()) == 2 * len(exports.FORMATS)
    files = files_under(media)

    with CaptureQueriesContext(connection) as queries:
        assert exports.export_snapshots_write_all() == []
    # The fingerprint is three aggregates (items, answers, rankings); nothing else counts rows.
    aggregates = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"]]
    assert len(aggregates) == 3 * len(projects), aggregates
    assert ExportSnapshot.objects.count() == 2 * len(exports.FORMATS)
    assert files_under(media) == files


def test_a_forced_parquet_snapshot_does_not_make_the_scheduled_jsonl_one_look_changed(media):
    project = ProjectFactory()
    RankingFactory.create_batch(2, item__project=project)
    scheduled = export_snapshot_create(project=project, format="rankings")
    parquet = export_snapshot_create(project=project, format="rankings", container="parquet", force=True)
    assert exports.export_snapshots_write_all(formats=["rankings"]) == []
    assert set(ExportSnapshot.objects.values_list("pk", flat=True)) == {scheduled.pk, parquet.pk}


def test_the_latest_snapshot_is_of_the_file_type_asked_for(media):
    project = ProjectFactory()
    RankingFactory(item__project=project)
    jsonl = export_snapshot_create(project=project, format="pairs")
    gzipped = export_snapshot_create(project=project, format="pairs", container="jsonl.gz")
    assert exports.export_snapshot_latest(project=project, format="pairs") == jsonl
    assert exports.export_snapshot_latest(project=project, format="pairs", container="jsonl.gz") == gzipped
    assert exports.export_snapshot_latest(project=project, format="pairs", container="parquet") is None


def test_prune_keeps_the_newest_snapshots_of_each_file_type_so_parquet_ones_do_not_push_out_the_jsonl(
    media, django_capture_on_commit_callbacks
):
    project = ProjectFactory()
    RankingFactory(item__project=project)
    scheduled = export_snapshot_create(project=project, format="rankings")
    parquet = [
        export_snapshot_create(project=project, format="rankings", container="parquet", force=True)
        for _ in range(3)
    ]
    with django_capture_on_commit_callbacks(execute=True):
        assert export_snapshot_prune(keep=2) == 1
    assert set(ExportSnapshot.objects.values_list("pk", flat=True)) == {
        scheduled.pk,
        parquet[1].pk,
        parquet[2].pk,
    }
    assert not (media / parquet[0].file.name).exists()
    # The scheduled jsonl snapshot is still there, so an unchanged project gets no new one.
    assert exports.export_snapshots_write_all(formats=["rankings"]) == []


def test_a_snapshot_records_the_file_type_it_was_written_in(media):
    project = ProjectFactory()
    RankingFactory(item__project=project)
    for container in exports.CONTAINERS:
        snapshot = export_snapshot_create(project=project, format="pairs", container=container)
        assert snapshot.container == container
        assert snapshot.file.name.endswith(f".{container}")


def test_the_export_file_types_are_the_snapshot_file_types_and_each_downloads_with_a_content_type():
    from annotation.api.exports import CONTENT_TYPES

    assert ExportSnapshot.Container.values == exports.CONTAINERS
    # CONTAINERS is derived from the model's choices; the download's content types are a list of their own.
    assert sorted(CONTENT_TYPES) == sorted(ExportSnapshot.Container.values)


OLD_STYLE_ROWS = {
    # file name: fingerprint as written before the container column (the file type only at its head)
    "a.parquet": "parquet|1:2:3:4:5:6",
    "b.jsonl.gz": "jsonl.gz|1:2:3:4:5:6",
    "c.jsonl": "jsonl|1:2:3:4:5:6",
    "d.PARQUET": "",
    "e.jsonl.gz": "7:8",
    "f.jsonl": "",
}


@pytest.mark.django_db(transaction=True)
def test_the_migration_takes_the_file_type_from_the_fingerprint_else_the_file_name_and_back():
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before = [("annotation", "0004_item_rendered")]
    after = [("annotation", "0005_export_snapshot_container")]
    executor = MigrationExecutor(connection)
    try:
        executor.migrate(before)
        old = executor.loader.project_state(before).apps
        project = old.get_model("annotation", "Project").objects.create(name="Before the migration")
        for file, fingerprint in OLD_STYLE_ROWS.items():
            old.get_model("annotation", "ExportSnapshot").objects.create(
                project_id=project.pk,
                format="rankings",
                file=file,
                sha256="0",
                source_fingerprint=fingerprint,
            )

        executor.loader.build_graph()
        executor.migrate(after)
        new = executor.loader.project_state(after).apps
        rows = new.get_model("annotation", "ExportSnapshot").objects.order_by("file")
        assert list(rows.values_list("file", "container", "source_fingerprint")) == [
            ("a.parquet", "parquet", "1:2:3:4:5:6"),
            ("b.jsonl.gz", "jsonl.gz", "1:2:3:4:5:6"),
            ("c.jsonl", "jsonl", "1:2:3:4:5:6"),
            ("d.PARQUET", "parquet", ""),
            ("e.jsonl.gz", "jsonl.gz", "7:8"),
            ("f.jsonl", "jsonl", ""),
        ]

        executor.loader.build_graph()
        executor.migrate(before)
        rows = old.get_model("annotation", "ExportSnapshot").objects.order_by("file")
        assert list(rows.values_list("source_fingerprint", flat=True)) == [
            "parquet|1:2:3:4:5:6",
            "jsonl.gz|1:2:3:4:5:6",
            "jsonl|1:2:3:4:5:6",
            "parquet|",
            "jsonl.gz|7:8",
            "jsonl|",
        ]
    finally:
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())


def test_after_the_migration_an_unchanged_project_gets_no_new_snapshot_in_any_file_type(media):
    project = ProjectFactory()
    RankingFactory.create_batch(2, item__project=project)
    written = [
        export_snapshot_create(project=project, format="rankings", container=container)
        for container in exports.CONTAINERS
    ]
    # Put them back as the code before the migration wrote them.
    for snapshot in written:
        ExportSnapshot.objects.filter(pk=snapshot.pk).update(
            container=ExportSnapshot.Container.JSONL,
            source_fingerprint=f"{snapshot.container}|{snapshot.source_fingerprint}",
        )
    container_migration.fill_container(django_apps, None)
    for container in exports.CONTAINERS:
        assert export_snapshot_create(project=project, format="rankings", container=container) is None
    assert ExportSnapshot.objects.count() == len(exports.CONTAINERS)


def test_the_snapshot_task_writes_the_file_type_asked_for_and_the_download_says_so(media, staff_client):
    project = ProjectFactory()
    RankingFactory(item__project=project)

    snapshot_id = export_snapshot_write(project.pk, "pairs", container="parquet")

    snapshot = ExportSnapshot.objects.get(pk=snapshot_id)
    assert snapshot.container == "parquet" and snapshot.file.name.endswith(".parquet")
    response = staff_client.get(f"/api/snapshots/{snapshot_id}/download/")
    assert response["Content-Type"] == "application/vnd.apache.parquet"
    assert b"".join(response.streaming_content).startswith(b"PAR1")
