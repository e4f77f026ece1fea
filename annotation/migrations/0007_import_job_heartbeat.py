"""ImportJob.heartbeat_at: kept fresh by the worker while a job runs, so that a job whose worker died is failed."""

from django.db import migrations, models
from django.db.models import F


def start_heartbeats(apps, schema_editor):
    """Jobs running now count from their start: if their worker is gone (a deploy), the reaper fails them."""
    ImportJob = apps.get_model("annotation", "ImportJob")
    ImportJob.objects.filter(status="running", heartbeat_at=None).update(heartbeat_at=F("started_at"))


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0006_import_job"),
    ]

    operations = [
        migrations.AddField(
            model_name="importjob",
            name="heartbeat_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(start_heartbeats, migrations.RunPython.noop),
    ]
