from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.urls import path
from django.utils.text import Truncator

from common.errors import Conflict

from .admin_import import project_import_view
from .gold import GoldOrderInvalid, gold_order_validate
from .imports import project_delete
from .models import Answer, Assignment, ExportSnapshot, ImportBatch, ImportJob, Item, Project, Ranking
from .projects import PROJECT_FIELDS, ProjectInvalid, project_save, project_values_validate


class ProjectAdminForm(forms.ModelForm):
    """The project form, checked by the same rules as the API (`annotation.projects`)."""

    class Meta:
        model = Project
        fields = list(PROJECT_FIELDS)

    def clean(self):
        cleaned = super().clean()
        values = {field: cleaned[field] for field in PROJECT_FIELDS if field in cleaned}
        try:
            cleaned.update(project_values_validate(values=values))
        except ProjectInvalid as exc:
            for field, message in exc.errors.items():
                self.add_error(field if field in self.fields else None, message)
        return cleaned


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    form = ProjectAdminForm
    list_display = [
        "name",
        "is_active",
        "rankings_per_item",
        "allow_ties",
        "work_order",
        "item_count",
        "created_at",
    ]
    list_filter = ["is_active", "allow_ties", "work_order"]
    search_fields = ["name", "guidelines"]
    readonly_fields = ["created_at"]
    fieldsets = [
        (None, {"fields": ["name", "is_active", "guidelines"]}),
        ("Ranking", {"fields": ["rankings_per_item", "allow_ties", "flag_labels", "revision_window_hours"]}),
        ("Quality", {"fields": ["gold_rate", "calibration_items"]}),
        ("Work order", {"fields": ["work_order", "max_rankings_per_item"]}),
        ("Training", {"fields": ["retrain_min_new_rankings", "training_arguments"]}),
        (None, {"fields": ["created_at"]}),
    ]
    actions: list = []  # training adds "Retrain now" (training/admin.py)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(item_count=Count("items"))

    @admin.display(ordering="item_count", description="items")
    def item_count(self, project):
        return project.item_count

    def get_urls(self):
        # The "Import data" page, linked from the project's change page (its change_form.html).
        import_view = self.admin_site.admin_view(self.import_view)
        return [
            path("<path:object_id>/import/", import_view, name="annotation_project_import"),
            *super().get_urls(),
        ]

    def import_view(self, request, object_id):
        return project_import_view(self, request, object_id)

    # The delete page already refuses while an import job is unfinished (ImportJobAdmin's delete
    # permission); the service checks again under a lock, for a job queued after the page was shown.
    def save_model(self, request, obj, form, change):
        project_save(project=obj)

    def delete_model(self, request, obj):
        try:
            project_delete(project=obj)
        except Conflict as exc:  # an import job unfinished, or (training) a run
            raise PermissionDenied(str(exc)) from exc

    def delete_queryset(self, request, queryset):
        for project in queryset:
            self.delete_model(request, project)


class AnswerInline(admin.TabularInline):
    model = Answer
    fields = ["position", "text", "model_name", "external_id"]
    extra = 0
    ordering = ["position"]


class RankingInline(admin.TabularInline):
    model = Ranking
    fields = ["source", "annotator", "external_annotator", "order", "not_rankable", "flags", "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


class ItemAdminForm(forms.ModelForm):
    """The item form; a known ranking makes the item gold (annotation.gold), checked against its answers."""

    class Meta:
        model = Item
        fields = ["gold_order"]  # the admin adds the rest of its fields

    def clean_gold_order(self):
        order = self.cleaned_data.get("gold_order")
        if order is None:
            return None
        if self.instance.pk is None:
            raise forms.ValidationError("Save the item with its answers first, then give its gold ranking.")
        try:
            return gold_order_validate(item=self.instance, order=order)
        except GoldOrderInvalid as exc:
            raise forms.ValidationError(str(exc)) from exc


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
    form = ItemAdminForm
    list_display = [
        "id",
        "project",
        "external_id",
        "prompt_preview",
        "answer_count",
        "human_ranking_count",
        "is_gold",
    ]
    list_filter = ["project", "created_at"]
    search_fields = ["external_id", "answers__text", "answers__external_id"]
    list_select_related = ["project"]
    readonly_fields = ["human_ranking_count", "open_lease_count", "import_batch", "created_at"]
    inlines = [AnswerInline, RankingInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(answer_count=Count("answers"))

    @admin.display(description="prompt")
    def prompt_preview(self, item):
        return Truncator(item.prompt).chars(90)

    @admin.display(ordering="answer_count", description="answers")
    def answer_count(self, item):
        return item.answer_count

    @admin.display(boolean=True, description="gold")
    def is_gold(self, item):
        return item.gold_order is not None


@admin.register(Ranking)
class RankingAdmin(admin.ModelAdmin):
    list_display = ["id", "item", "source", "who", "not_rankable", "has_flags", "seconds_spent", "created_at"]
    list_filter = ["source", "not_rankable", "item__project", "created_at"]
    search_fields = ["annotator__username", "external_annotator", "item__external_id", "comment"]
    raw_id_fields = ["item", "annotator", "import_batch"]
    list_select_related = ["item", "annotator"]
    date_hierarchy = "created_at"

    @admin.display(description="by")
    def who(self, ranking):
        return ranking.annotator or ranking.external_annotator or "import"

    @admin.display(boolean=True, description="flags")
    def has_flags(self, ranking):
        return bool(ranking.flags)


@admin.register(ImportBatch)
class ImportBatchAdmin(admin.ModelAdmin):
    list_display = [
        "file_name",
        "project",
        "format",
        "items_created",
        "rankings_created",
        "gold_marked",
        "created_by",
        "created_at",
    ]
    list_filter = ["format", "gold", "project"]
    search_fields = ["file_name", "sha256"]
    readonly_fields = [field.name for field in ImportBatch._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    """Files queued for import from the upload page or the API: read-only, the worker writes them."""

    list_display = [
        "file_name",
        "project",
        "status",
        "short_error",
        "created_by",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status", "project"]
    search_fields = ["file_name", "error"]
    list_select_related = ["project", "created_by"]
    readonly_fields = [field.name for field in ImportJob._meta.fields]

    @admin.display(description="error")
    def short_error(self, job):
        return Truncator(job.error).chars(120)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        # A queued or running job still has its upload, which only the job (or the reaper) deletes; a
        # finished one has none left. So a project with an unfinished job waits for it to be deleted.
        if obj is not None and obj.status not in ImportJob.FINISHED_STATUSES:
            return False
        return super().has_delete_permission(request, obj)


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ["id", "item", "annotator", "status", "created_at", "expires_at", "finished_at"]
    list_filter = ["status", "project"]
    search_fields = ["annotator__username", "item__external_id"]
    raw_id_fields = ["item", "annotator", "ranking"]
    list_select_related = ["item", "annotator"]


@admin.register(ExportSnapshot)
class ExportSnapshotAdmin(admin.ModelAdmin):
    list_display = ["project", "format", "container", "row_count", "item_count", "sha256", "created_at"]
    list_filter = ["format", "container", "project"]
    readonly_fields = [field.name for field in ExportSnapshot._meta.fields]

    def has_add_permission(self, request):
        return False
