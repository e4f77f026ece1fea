"""The beat entry, every minute, that fails import jobs whose worker died (editable in the admin)."""

import json

from django.db import migrations

NAME = "imports: fail jobs whose worker stopped sending heartbeats"


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
            "description": "Marks running import jobs failed once their heartbeat is older than "
            "IMPORT_JOB_STALE_SECONDS (worker killed, machine lost), and deletes their uploads.",
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
