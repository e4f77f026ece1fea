"""The beat entry, every minute, that fails import jobs whose worker died or that no worker took (editable)."""

import json

from django.db import migrations

NAME = "imports: fail jobs whose worker died or that no worker took"


def create_schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_minute, _ = IntervalSchedule.objects.get_or_create(every=1, period="minutes")
    PeriodicTask.objects.get_or_create(
        name=NAME,
        defaults={
            "task": "annotation.tasks.reap_stale_import_jobs",
            "interval": every_minute,
            "queue": "default",
            "kwargs": json.dumps({}),
            # A worker that was down for hours need not run the hours of missed checks on its return.
            "expire_seconds": 60,
            "description": "Marks import jobs failed and deletes their uploads: running ones once their "
            "heartbeat is older than IMPORT_JOB_STALE_SECONDS (worker killed, machine lost), queued ones "
            "that no worker took within IMPORT_JOB_QUEUE_TIMEOUT_SECONDS (message lost).",
        },
    )


def delete_schedule(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0007_import_job_heartbeat"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]
