"""ExportSnapshot.container: the file type, until now kept only as the head of source_fingerprint."""

from django.db import migrations, models
from django.db.models import Case, F, Q, Value, When
from django.db.models.functions import Concat, Substr

# As they were when this was written (annotation.exports.CONTAINERS); a migration does not follow later code.
CONTAINERS = ["jsonl", "jsonl.gz", "parquet"]


def fill_container(apps, schema_editor):
    """Set each snapshot's container from its fingerprint's `<container>|` head, else its file's ending.

    The head is taken off: export_snapshot_create now compares the container column and the bare data
    fingerprint, and an unchanged project must still get no new file after the upgrade.
    """
    heads = [(container, Q(source_fingerprint__startswith=f"{container}|")) for container in CONTAINERS]
    container = Case(
        *[When(head, then=Value(name)) for name, head in heads],
        When(file__iendswith=".parquet", then=Value("parquet")),
        When(file__iendswith=".gz", then=Value("jsonl.gz")),
        default=Value("jsonl"),
    )
    fingerprint = Case(
        *[When(head, then=Substr("source_fingerprint", len(name) + 2)) for name, head in heads],
        default=F("source_fingerprint"),
    )
    # One UPDATE, so each row changes once: PostgreSQL queues a foreign key check for a row this
    # transaction already changed, and pending checks refuse the schema changes that follow.
    apps.get_model("annotation", "ExportSnapshot").objects.update(
        container=container, source_fingerprint=fingerprint
    )


def restore_fingerprint_head(apps, schema_editor):
    """Put the `<container>|` head back, where the code before this migration looks for the container."""
    snapshots = apps.get_model("annotation", "ExportSnapshot").objects.all()
    snapshots.update(source_fingerprint=Concat("container", Value("|"), "source_fingerprint"))


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0004_item_rendered"),
    ]

    operations = [
        migrations.AddField(
            model_name="exportsnapshot",
            name="container",
            field=models.CharField(
                choices=[
                    ("jsonl", "JSON Lines"),
                    ("jsonl.gz", "JSON Lines, gzipped"),
                    ("parquet", "Parquet"),
                ],
                default="jsonl",
                max_length=10,
            ),
        ),
        migrations.RunPython(fill_container, restore_fingerprint_head),
        migrations.RemoveIndex(
            model_name="exportsnapshot",
            name="snapshot_latest_idx",
        ),
        migrations.AddIndex(
            model_name="exportsnapshot",
            index=models.Index(
                fields=["project", "format", "container", "-created_at"], name="snapshot_latest_idx"
            ),
        ),
    ]
