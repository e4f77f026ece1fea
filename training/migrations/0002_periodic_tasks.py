"""Create the beat entries (editable in the admin): the retrain check every 15 minutes, the reaper every minute."""

import json

from django.db import migrations

PERIODIC_TASKS = [
    {
        "name": "training: start runs for projects with enough new rankings",
        "task": "training.tasks.check_retrain",
        "every": 15,
        "period": "minutes",
        "description": "Starts a training run for each project with at least retrain_min_new_rankings "
        "new rankings since its last successful run.",
    },
    {
        "name": "training: fail runs whose worker stopped sending heartbeats",
        "task": "training.tasks.reap_stale_runs",
        "every": 1,
        "period": "minutes",
        "description": "Marks running runs failed once their heartbeat is older than "
        "TRAINING_STALE_AFTER_SECONDS (worker killed, machine lost).",
    },
]


def create_periodic_tasks(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for spec in PERIODIC_TASKS:
        schedule, _ = IntervalSchedule.objects.get_or_create(every=spec["every"], period=spec["period"])
        PeriodicTask.objects.get_or_create(
            name=spec["name"],
            defaults={
                "task": spec["task"],
                "interval": schedule,
                # Light work: the default queue, never behind a long training run.
                "queue": "default",
                "kwargs": json.dumps({}),
                "description": spec["description"],
            },
        )


def delete_periodic_tasks(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name__in=[spec["name"] for spec in PERIODIC_TASKS]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("training", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_periodic_tasks, delete_periodic_tasks)]
