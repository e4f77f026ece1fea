"""The hourly beat entry that writes export snapshots (editable in the admin under Periodic tasks)."""

import json

from django.db import migrations

NAME = "exports: snapshot every active project where its data changed"


def create_schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    hourly, _ = IntervalSchedule.objects.get_or_create(every=1, period="hours")
    PeriodicTask.objects.get_or_create(
        name=NAME,
        defaults={
            "task": "annotation.tasks.export_snapshots_write",
            "interval": hourly,
            "queue": "default",
            "kwargs": json.dumps({}),
            "description": "Writes a snapshot of each active project in each export format when its rankings, "
            "items or answers changed since the last one, then prunes to EXPORT_SNAPSHOT_RETENTION.",
        },
    )


def delete_schedule(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]
