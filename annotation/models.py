"""What people rank: projects, items (a conversation and its candidate answers) and rankings."""

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import F, Q

DEFAULT_FLAG_LABELS = ["spam", "harmful", "factually wrong", "off-topic", "not in the right language"]


def default_flag_labels() -> list[str]:
    """The flags an annotator may set on an answer when a project names none."""
    return list(DEFAULT_FLAG_LABELS)


class Project(models.Model):
    name = models.CharField(max_length=200, unique=True)
    guidelines = models.TextField(blank=True, help_text="Markdown shown to annotators.")
    rankings_per_item = models.PositiveSmallIntegerField(
        default=3,
        validators=[MinValueValidator(1)],
        help_text="How many people should rank each item.",
    )
    allow_ties = models.BooleanField(default=True)
    flag_labels = models.JSONField(
        default=default_flag_labels, blank=True, help_text="Labels annotators may put on an answer."
    )
    is_active = models.BooleanField(default=True, help_text="Inactive projects offer no work.")
    retrain_min_new_rankings = models.PositiveIntegerField(
        default=50, help_text="The schedule retrains once this many new rankings exist since the last run."
    )
    training_arguments = models.JSONField(
        default=dict, blank=True, help_text="Extra arguments for the training engine, e.g. base_model."
    )
    calibration_items = models.PositiveIntegerField(
        default=0,
        help_text="The first this many items get all their rankings before other items get any, "
        "so that agreement can be measured from the start (0: no calibration set).",
    )
    gold_rate = models.FloatField(
        default=0.05,
        help_text="The share of each annotator's items that are gold items (0 to 1), while any remain.",
    )
    revision_window_hours = models.PositiveIntegerField(
        default=24,
        help_text="How long after submitting an annotator may reopen and change a ranking; 0: never.",
    )

    class WorkOrder(models.TextChoices):
        COVERAGE = "coverage", "Coverage: fewest rankings first"
        RANDOM = "random", "Random, among the items with fewest rankings"
        MODEL = "model", "Model: most informative to the active reward model first"

    work_order = models.CharField(
        max_length=10,
        choices=WorkOrder.choices,
        default=WorkOrder.COVERAGE,
        help_text="Which item an annotator gets next (annotation.work_order).",
    )
    max_rankings_per_item = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="Disputed items come back for more rankings up to this many; empty: they do not come back.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(rankings_per_item__gte=1), name="project_rankings_per_item_gte_1"
            ),
            models.CheckConstraint(
                condition=Q(max_rankings_per_item__isnull=True)
                | Q(max_rankings_per_item__gte=F("rankings_per_item")),
                name="project_max_rankings_gte_rankings_per_item",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class ImportBatch(models.Model):
    """One file imported into a project; rankings it carried point back to it."""

    class Format(models.TextChoices):
        OASST_TREE = "oasst-tree", "Open-Assistant trees"
        OASST_MESSAGES = "oasst-messages", "Open-Assistant message rows"
        RANKINGS = "rankings", "Ranking rows"
        PAIRS = "pairs", "Pairwise preference rows"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="imports")
    file_name = models.CharField(max_length=500)
    format = models.CharField(max_length=20, choices=Format.choices)
    sha256 = models.CharField(max_length=64, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    lines_read = models.PositiveIntegerField(default=0)
    items_created = models.PositiveIntegerField(default=0)
    answers_created = models.PositiveIntegerField(default=0)
    rankings_created = models.PositiveIntegerField(default=0)
    # A gold import (annotation.gold): each row's ranking became its item's known ranking, not a Ranking.
    gold = models.BooleanField(default=False)
    gold_marked = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "import batches"

    def __str__(self) -> str:
        return f"{self.file_name} → {self.project}"

    def summary(self) -> str:
        """What the import read and added, in one line for people."""
        return (
            f"{self.get_format_display()}, {self.lines_read} lines: {self.items_created} new items, "
            f"{self.answers_created} new answers, "
            + (
                f"{self.gold_marked} items marked gold"
                if self.gold
                else f"{self.rankings_created} new imported rankings"
            )
        )


class ImportJob(models.Model):
    """An uploaded file whose import runs on a Celery worker: web requests cannot wait for a large one."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    FINISHED_STATUSES = (Status.SUCCEEDED, Status.FAILED)
    # What a person may ask for: "auto" or one of ImportBatch.Format; the batch records the format read.
    FORMAT_CHOICES = [("auto", "Detect from the file"), *ImportBatch.Format.choices]

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="import_jobs")
    # The stored upload, deleted (and this emptied) once the job has run, whatever the outcome.
    upload = models.FileField(upload_to="imports/%Y/%m/", max_length=500, blank=True)
    file_name = models.CharField(max_length=500)
    format = models.CharField(max_length=20, choices=FORMAT_CHOICES, default="auto")
    gold = models.BooleanField(default=False)  # import the file's items as gold items (annotation.gold)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    error = models.TextField(blank=True)
    batch = models.OneToOneField(
        ImportBatch, null=True, blank=True, on_delete=models.SET_NULL, related_name="job"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # Kept fresh by the worker while the job runs; a stale one means the worker died (import_jobs_reap_stale).
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["queued", "running"], finished_at__isnull=True)
                | Q(status__in=["succeeded", "failed"], finished_at__isnull=False),
                name="import_job_finished_at_iff_finished",
            ),
            models.CheckConstraint(
                condition=~Q(status="failed") | ~Q(error=""), name="import_job_failure_has_error"
            ),
        ]
        indexes = [
            # The admin list and a project's history, newest first.
            models.Index(fields=["project", "-created_at"], name="import_job_project_idx"),
            # Jobs by state: the admin's filter, and how a queue that does not drain is noticed.
            models.Index(fields=["status", "created_at"], name="import_job_status_idx"),
        ]

    def __str__(self) -> str:
        return f"Import of {self.file_name} into {self.project} ({self.status})"


class Item(models.Model):
    """A conversation ending in a user turn, and the candidate answers people rank."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="items")
    external_id = models.CharField(max_length=255, blank=True)
    # Ordered turns: [{"role": "system" | "user" | "assistant", "content": "..."}, ...]
    conversation = models.JSONField()
    import_batch = models.ForeignKey(
        ImportBatch, null=True, blank=True, on_delete=models.SET_NULL, related_name="items"
    )
    # Denormalised counters kept by the assignment service, so that finding work never counts rows.
    human_ranking_count = models.PositiveIntegerField(default=0)
    open_lease_count = models.PositiveIntegerField(default=0)
    # The turns and answers as sanitised HTML, each with a digest of its text, written the first time
    # the item is handed out (annotation.item_html); text that changed since is rendered again.
    rendered = models.JSONField(null=True, blank=True, editable=False)
    # Model in the loop (annotation.work_order): written by training's scoring pass, read by assignment.
    # model_priority orders the `model` work order: the pass's rank of the item's informativeness in
    # [0, 1]; new items start at the neutral 0.5, items that need no more rankings sink to -1.
    model_priority = models.FloatField(default=0.5, db_default=0.5, editable=False)
    informativeness = models.FloatField(null=True, blank=True, editable=False)
    # {answer id: reward} from the version that scored the item; the version as a plain number, since
    # annotation does not import training.
    model_rewards = models.JSONField(default=dict, blank=True, editable=False)
    scored_version = models.PositiveIntegerField(null=True, blank=True, editable=False)
    scored_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Rankings wanted beyond the project's rankings_per_item because the item is disputed.
    extra_rankings = models.PositiveSmallIntegerField(default=0, db_default=0)
    disputed_reason = models.CharField(max_length=200, blank=True, default="", db_default="")
    # Gold: an item with a known ranking (tie groups of answer ids, best first), mixed into each
    # annotator's work at the project's gold_rate and kept out of exports (annotation.gold).
    gold_order = models.JSONField(null=True, blank=True, default=None)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "external_id"],
                condition=~Q(external_id=""),
                name="item_external_id_unique_per_project",
            ),
        ]
        indexes = [
            models.Index(fields=["project", "human_ranking_count", "id"], name="item_project_need_idx"),
            # The `model` work order: most informative first, items that need nothing more at the end.
            models.Index(fields=["project", "-model_priority", "id"], name="item_project_model_idx"),
            # Gold items (annotation.gold): a few per project, found without reading the others.
            models.Index(
                fields=["project", "id"], condition=Q(gold_order__isnull=False), name="item_project_gold_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"Item {self.pk} ({self.project})"

    @property
    def prompt(self) -> str:
        """The last user turn, the question the answers reply to."""
        for turn in reversed(self.conversation or []):
            if turn.get("role") == "user":
                return turn.get("content", "")
        return ""


class Answer(models.Model):
    """One candidate assistant reply to an item's conversation."""

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="answers")
    # Denormalised so that external ids can be unique per project in the database.
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    position = models.PositiveSmallIntegerField(help_text="Place in the imported order, from 0.")
    text = models.TextField()
    model_name = models.CharField(max_length=200, blank=True)
    external_id = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["item_id", "position"]
        constraints = [
            models.UniqueConstraint(fields=["item", "position"], name="answer_position_unique_per_item"),
            models.UniqueConstraint(
                fields=["project", "external_id"],
                condition=~Q(external_id=""),
                name="answer_external_id_unique_per_project",
            ),
        ]

    def __str__(self) -> str:
        return f"Answer {self.pk} of item {self.item_id}"


class Ranking(models.Model):
    """One ordering of an item's answers, by a person or carried in by an import."""

    class Source(models.TextChoices):
        HUMAN = "human", "Annotator"
        IMPORT = "import", "Import"

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="rankings")
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.HUMAN)
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="rankings"
    )
    import_batch = models.ForeignKey(
        ImportBatch, null=True, blank=True, on_delete=models.CASCADE, related_name="rankings"
    )
    # Who ranked in the imported data ("" for an aggregate such as Open-Assistant's `rank`).
    external_annotator = models.CharField(max_length=255, blank=True)
    # Best first; each element is a tie group of answer ids: [[12], [14, 15], [13]].
    order = models.JSONField(default=list, blank=True)
    not_rankable = models.BooleanField(default=False, help_text="None of the answers is acceptable.")
    # {answer_id: [label, ...]}
    flags = models.JSONField(default=dict, blank=True)
    comment = models.TextField(blank=True)
    seconds_spent = models.FloatField(null=True, blank=True)
    # Whether the submitted order differs from the shuffled one the page showed (a care signal: an
    # untouched order is often a careless one); empty for imported rankings and empty "none acceptable".
    order_changed = models.BooleanField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # When its annotator last changed it (annotation.revisions); empty while never changed.
    changed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(source="human", annotator__isnull=False, import_batch__isnull=True))
                | Q(source="import", annotator__isnull=True, import_batch__isnull=False),
                name="ranking_source_matches_origin",
            ),
            models.UniqueConstraint(
                fields=["item", "annotator"],
                condition=Q(source="human"),
                name="ranking_one_per_annotator_per_item",
            ),
            models.UniqueConstraint(
                fields=["item", "external_annotator"],
                condition=Q(source="import"),
                name="ranking_imported_once_per_item",
            ),
            models.CheckConstraint(
                condition=Q(seconds_spent__isnull=True) | Q(seconds_spent__gte=0),
                name="ranking_seconds_spent_not_negative",
            ),
        ]
        indexes = [
            models.Index(fields=["item", "source"], name="ranking_item_source_idx"),
            models.Index(fields=["annotator", "created_at"], name="ranking_annotator_created_idx"),
        ]

    def __str__(self) -> str:
        who = self.annotator or self.external_annotator or "import"
        return f"Ranking of item {self.item_id} by {who}"


class Assignment(models.Model):
    """A lease on one item for one annotator: the slot is theirs until it is submitted, skipped or expires."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        SUBMITTED = "submitted", "Submitted"
        SKIPPED = "skipped", "Skipped"
        EXPIRED = "expired", "Expired"

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="assignments")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="assignments")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    # The answers' ids in the shuffled order this annotator sees them (position bias).
    answer_order = models.JSONField(default=list)
    ranking = models.OneToOneField(
        Ranking, null=True, blank=True, on_delete=models.SET_NULL, related_name="assignment"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["item", "annotator"], name="assignment_one_per_annotator_per_item"
            ),
        ]
        indexes = [
            models.Index(fields=["project", "annotator", "status"], name="assignment_annotator_idx"),
            models.Index(fields=["status", "expires_at"], name="assignment_expiry_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.annotator} on item {self.item_id} ({self.status})"


class ExportSnapshot(models.Model):
    """A dataset file written on a schedule or on demand, kept for download and training."""

    class Format(models.TextChoices):
        RANKINGS = "rankings", "Rankings"
        CONSENSUS = "consensus", "Consensus"
        PAIRS = "pairs", "Pairs"
        PAIRS_CHAT = "pairs-chat", "Pairs (chat)"
        OASST = "oasst", "Open-Assistant trees"

    class Container(models.TextChoices):
        JSONL = "jsonl", "JSON Lines"
        JSONL_GZ = "jsonl.gz", "JSON Lines, gzipped"
        PARQUET = "parquet", "Parquet"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="export_snapshots")
    format = models.CharField(max_length=20, choices=Format.choices)
    # The file type; a forced parquet file and the scheduled jsonl one are kept and compared apart.
    container = models.CharField(max_length=10, choices=Container.choices, default=Container.JSONL)
    filters = models.JSONField(default=dict, blank=True)
    file = models.FileField(upload_to="exports/%Y/%m/", max_length=500)
    row_count = models.PositiveIntegerField(default=0)
    item_count = models.PositiveIntegerField(default=0)
    sha256 = models.CharField(max_length=64)
    # What the data looked like when written (export_source_fingerprint), to skip unchanged projects.
    source_fingerprint = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["project", "format", "container", "-created_at"], name="snapshot_latest_idx")
        ]

    def __str__(self) -> str:
        return f"{self.get_format_display()} snapshot of {self.project} ({self.created_at:%Y-%m-%d %H:%M})"


class AgreementFigures(models.Model):
    """A project's agreement figures as last worked out: a large project takes a minute, so they are kept."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="agreement_figures")
    # The project's data when they were worked out (see ExportSnapshot.source_fingerprint).
    source_fingerprint = models.CharField(max_length=200)
    figures = models.JSONField(default=dict)
    computed_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "agreement figures"

    def __str__(self) -> str:
        return f"Agreement figures of {self.project}"


class RankingRevision(models.Model):
    """An earlier version of a ranking its annotator changed: the ranking row holds the current one."""

    ranking = models.ForeignKey(Ranking, on_delete=models.CASCADE, related_name="revisions")
    order = models.JSONField(default=list, blank=True)
    not_rankable = models.BooleanField(default=False)
    flags = models.JSONField(default=dict, blank=True)
    comment = models.TextField(blank=True)
    seconds_spent = models.FloatField(null=True, blank=True)
    order_changed = models.BooleanField(null=True, blank=True)
    # When this version was submitted, and when the annotator replaced it.
    ranked_at = models.DateTimeField()
    replaced_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-replaced_at"]

    def __str__(self) -> str:
        return f"Revision of ranking #{self.ranking_id} replaced {self.replaced_at:%Y-%m-%d %H:%M}"


class AnnotatorExclusion(models.Model):
    """Staff left this annotator's rankings of the project out of exports and training (reversible)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="exclusions")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    excluded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "annotator"], name="annotator_exclusion_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.annotator} excluded from {self.project}"
