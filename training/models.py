"""Training runs and the reward-model versions they produce."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from annotation.models import ExportSnapshot, Project


class TrainingRun(models.Model):
    """One execution of the training engine on a fresh export of a project's rankings."""

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", "Schedule"
        ADMIN = "admin", "Admin"
        API = "api", "API"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    ACTIVE_STATUSES = (Status.QUEUED, Status.RUNNING)
    FINISHED_STATUSES = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="training_runs")
    trigger = models.CharField(max_length=10, choices=Trigger.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    retry_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retries"
    )
    export_snapshot = models.ForeignKey(
        ExportSnapshot, null=True, blank=True, on_delete=models.SET_NULL, related_name="training_runs"
    )
    # The engine's arguments as run (project defaults merged with per-run overrides).
    arguments = models.JSONField(default=dict, blank=True)
    # The newest ranking id the export covered: the schedule counts newer rankings than this.
    last_ranking_id = models.BigIntegerField(null=True, blank=True)
    # The newest revision id (annotation.revisions) it covered: a ranking changed since counts as new too.
    last_revision_id = models.BigIntegerField(null=True, blank=True)
    train_row_count = models.PositiveIntegerField(default=0)
    eval_row_count = models.PositiveIntegerField(default=0)

    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    epoch = models.FloatField(default=0)
    # [[step, loss], ...], thinned so that long runs stay a few hundred points.
    loss_history = models.JSONField(default=list, blank=True)
    # The engine's last "eval" event and its final "result" event.
    eval_metrics = models.JSONField(default=dict, blank=True)
    result_metrics = models.JSONField(default=dict, blank=True)
    log_tail = models.TextField(blank=True)
    error = models.TextField(blank=True)

    # Where the engine runs, so that cancel and the reaper can reach its process group.
    worker_hostname = models.CharField(max_length=255, blank=True)
    process_id = models.IntegerField(null=True, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # The database, not a check in Python, guarantees one queued-or-running run per project.
            models.UniqueConstraint(
                fields=["project"],
                condition=Q(status__in=["queued", "running"]),
                name="training_run_one_active_per_project",
            ),
            models.CheckConstraint(
                condition=Q(step__lte=models.F("total_steps")) | Q(total_steps=0),
                name="training_run_step_within_total",
            ),
        ]
        indexes = [
            models.Index(fields=["project", "status", "-created_at"], name="training_run_project_idx"),
            models.Index(fields=["status", "heartbeat_at"], name="training_run_heartbeat_idx"),
        ]

    def __str__(self) -> str:
        return f"Run {self.pk} of {self.project} ({self.status})"

    @property
    def is_active(self) -> bool:
        """Queued or running."""
        return self.status in self.ACTIVE_STATUSES

    @property
    def progress_percent(self) -> int:
        """How far through its steps the run is, 0-100."""
        if self.status == self.Status.SUCCEEDED:
            return 100
        if not self.total_steps:
            return 0
        return min(100, round(100 * self.step / self.total_steps))

    @property
    def duration_seconds(self) -> float | None:
        """Wall time from start to finish (or to the last heartbeat while running)."""
        end = self.finished_at or self.heartbeat_at
        if not self.started_at or not end:
            return None
        return (end - self.started_at).total_seconds()


class RewardModel(models.Model):
    """A trained reward model: one version per successful run, at most one active per project."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="reward_models")
    version = models.PositiveIntegerField()
    training_run = models.OneToOneField(
        TrainingRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="reward_model"
    )
    artifact_path = models.CharField(max_length=1000, help_text="Directory the engine saved the model to.")
    base_model = models.CharField(max_length=500, blank=True)
    # Pairwise accuracy and friends on the project's fixed evaluation split, at training time.
    metrics = models.JSONField(default=dict, blank=True)
    pairwise_accuracy = models.FloatField(null=True, blank=True)
    eval_pairs = models.PositiveIntegerField(default=0)
    # What the active model scored on this version's evaluation data, for the promotion decision.
    compared_with = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    compared_accuracy = models.FloatField(null=True, blank=True)
    is_active = models.BooleanField(default=False)
    activated_at = models.DateTimeField(null=True, blank=True)
    not_active_reason = models.TextField(blank=True)
    # The held-out pairs whose order changed since the previous version (`diagnostics.pair_flips`): counts
    # and a sample with both versions' margins, worked out when this version was registered.
    flips = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["project", "version"], name="reward_model_version_unique"),
            models.UniqueConstraint(
                fields=["project"], condition=Q(is_active=True), name="reward_model_one_active_per_project"
            ),
            models.CheckConstraint(
                condition=Q(pairwise_accuracy__isnull=True)
                | Q(pairwise_accuracy__gte=0, pairwise_accuracy__lte=1),
                name="reward_model_accuracy_in_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.project} v{self.version}{' (active)' if self.is_active else ''}"


class EvaluationSuite(models.Model):
    """An evaluation file staff uploaded to a project: each new version is scored on it in its training run.

    Pairs (`prompt`, `chosen`, `rejected`, an optional `subset`, as RewardBench lays them out) or ranked
    groups, in any format the readers read. The file never changes: a new file is a new suite.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="evaluation_suites")
    name = models.CharField(max_length=100)
    file = models.FileField(upload_to="evaluation_suites/%Y/%m/")
    file_name = models.CharField(max_length=500, help_text="The name it was uploaded under.")
    sha256 = models.CharField(max_length=64)
    format = models.CharField(max_length=20)
    items = models.PositiveIntegerField(default=0)
    pairs = models.PositiveIntegerField(default=0)
    # Rows per value of the file's `subset` field, {} when it has none.
    subsets = models.JSONField(default=dict, blank=True)
    holds_back_promotion = models.BooleanField(
        default=False,
        help_text="A new version whose accuracy on this suite is below the active version's stays inactive.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "name"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="evaluation_suite_name_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.project})"


class SuiteResult(models.Model):
    """A version's figures on one evaluation suite: from its own run, or from a newer version's comparison."""

    reward_model = models.ForeignKey(RewardModel, on_delete=models.CASCADE, related_name="suite_results")
    suite = models.ForeignKey(EvaluationSuite, on_delete=models.CASCADE, related_name="results")
    pairwise_accuracy = models.FloatField(null=True, blank=True)
    pairs = models.PositiveIntegerField(default=0)
    # Everything `evaluate` reports on the suite: interval, length bias, calibration, per-subset accuracy.
    figures = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["suite", "reward_model"]
        constraints = [
            models.UniqueConstraint(fields=["reward_model", "suite"], name="suite_result_unique"),
            models.CheckConstraint(
                condition=Q(pairwise_accuracy__isnull=True)
                | Q(pairwise_accuracy__gte=0, pairwise_accuracy__lte=1),
                name="suite_result_accuracy_in_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.reward_model} on {self.suite.name}"


class ScoringPass(models.Model):
    """The active model scoring every item that still needs rankings (`training.scoring_pass`)."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        # Another version became active mid-pass: what this one wrote stays, the new pass takes over.
        SUPERSEDED = "superseded", "Superseded"
        FAILED = "failed", "Failed"

    ACTIVE_STATUSES = (Status.QUEUED, Status.RUNNING)

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="scoring_passes")
    reward_model = models.ForeignKey(
        RewardModel, null=True, on_delete=models.SET_NULL, related_name="scoring_passes"
    )
    version = models.PositiveIntegerField()
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED)
    # Items the pass found needing rankings, those it scored (all of them, or only the unscored ones when
    # the version already scored the rest), and the seconds the scoring itself took.
    items_needing = models.PositiveIntegerField(default=0)
    items_scored = models.PositiveIntegerField(default=0)
    # Complete items this version disputed (it confidently prefers another answer than their consensus),
    # which then want one more ranking (annotation.work_order).
    items_disputed = models.PositiveIntegerField(default=0)
    seconds = models.FloatField(null=True, blank=True)
    # Spread of informativeness over the items needing rankings: min, quartiles, max.
    informativeness = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # One pass at a time per project: a second request while one is queued or running is a no-op.
            models.UniqueConstraint(
                fields=["project"],
                condition=Q(status__in=["queued", "running"]),
                name="scoring_pass_one_active_per_project",
            ),
        ]

    def __str__(self) -> str:
        return f"Scoring pass of {self.project} with v{self.version} ({self.status})"
