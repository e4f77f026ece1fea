"""ImportJob: an uploaded file imported in the background by a Celery worker."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0005_export_snapshot_container"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="ImportJob",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("upload", models.FileField(blank=True, max_length=500, upload_to="imports/%Y/%m/")),
                ("file_name", models.CharField(max_length=500)),
                (
                    "format",
                    models.CharField(
                        choices=[
                            ("auto", "Detect from the file"),
                            ("oasst-tree", "Open-Assistant trees"),
                            ("oasst-messages", "Open-Assistant message rows"),
                            ("rankings", "Ranking rows"),
                            ("pairs", "Pairwise preference rows"),
                        ],
                        default="auto",
                        max_length=20,
                    ),
                ),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("queued", "Queued"),
                            ("running", "Running"),
                            ("succeeded", "Succeeded"),
                            ("failed", "Failed"),
                        ],
                        default="queued",
                        max_length=10,
                    ),
                ),
                ("error", models.TextField(blank=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("started_at", models.DateTimeField(blank=True, null=True)),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                (
                    "batch",
                    models.OneToOneField(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="job",
                        to="annotation.importbatch",
                    ),
                ),
                (
                    "created_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "project",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="import_jobs",
                        to="annotation.project",
                    ),
                ),
            ],
            options={
                "ordering": ["-created_at", "-id"],
                "indexes": [
                    models.Index(fields=["project", "-created_at"], name="import_job_project_idx"),
                    models.Index(fields=["status", "created_at"], name="import_job_status_idx"),
                ],
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(
                            models.Q(("finished_at__isnull", True), ("status__in", ["queued", "running"])),
                            models.Q(("finished_at__isnull", False), ("status__in", ["succeeded", "failed"])),
                            _connector="OR",
                        ),
                        name="import_job_finished_at_iff_finished",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(
                            models.Q(("status", "failed"), _negated=True),
                            models.Q(("error", ""), _negated=True),
                            _connector="OR",
                        ),
                        name="import_job_failure_has_error",
                    ),
                ],
            },
        ),
    ]
