from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from annotation.admin import ProjectAdmin
from annotation.models import Project
from common.errors import DomainError

from .models import RewardModel, TrainingRun
from .registry import reward_model_activate
from .runs import TrainingQueueUnavailable, training_run_cancel, training_run_create


@admin.action(description="Retrain now", permissions=["change"])
def retrain_now(modeladmin, request, queryset):
    """The project admin's action: queue a training run for each selected project."""
    for project in queryset:
        try:
            run = training_run_create(
                project=project, trigger=TrainingRun.Trigger.ADMIN, created_by=request.user
            )
        except TrainingQueueUnavailable as exc:
            modeladmin.message_user(request, f"{project}: {exc}", messages.ERROR)
        except DomainError as exc:
            modeladmin.message_user(request, str(exc), messages.WARNING)
        else:
            url = reverse("training:project-runs", args=[project.pk])
            modeladmin.message_user(
                request,
                format_html(
                    'Queued training run #{} for {}: <a href="{}">follow it</a>.', run.pk, project, url
                ),
                messages.SUCCESS,
            )


# The project admin is annotation's; training adds its action here, as annotation knows nothing of training.
admin.site.unregister(Project)


@admin.register(Project)
class ProjectTrainingAdmin(ProjectAdmin):
    actions = [*ProjectAdmin.actions, retrain_now]


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "project",
        "trigger",
        "status",
        "progress",
        "created_by",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status", "trigger", "project"]
    list_select_related = ["project", "created_by"]
    date_hierarchy = "created_at"
    actions = ["cancel_runs"]
    readonly_fields = [field.name for field in TrainingRun._meta.fields]

    def has_add_permission(self, request):
        return False  # runs start through "Retrain now", the API or the schedule, never by hand-made rows

    def has_delete_permission(self, request, obj=None):
        # A queued or running run is cancelled first: its worker would go on writing into the directory
        # the delete removes (`model_files`).
        if obj is not None and obj.is_active:
            return False
        return super().has_delete_permission(request, obj)

    @admin.display(description="progress")
    def progress(self, run):
        url = reverse("training:project-runs", args=[run.project_id])
        return format_html('<a href="{}">{}%</a>', url, run.progress_percent)

    @admin.action(description="Cancel the selected runs")
    def cancel_runs(self, request, queryset):
        for run in queryset:
            try:
                training_run_cancel(run=run)
            except DomainError as exc:
                self.message_user(request, str(exc), messages.WARNING)


@admin.register(RewardModel)
class RewardModelAdmin(admin.ModelAdmin):
    list_display = ["project", "version", "pairwise_accuracy", "eval_pairs", "is_active", "created_at"]
    list_filter = ["is_active", "project"]
    list_select_related = ["project"]
    actions = ["activate"]
    readonly_fields = [field.name for field in RewardModel._meta.fields]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Make the selected version its project's active model")
    def activate(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version to activate.", messages.WARNING)
            return
        reward_model = reward_model_activate(reward_model=queryset.get())
        self.message_user(request, f"{reward_model} is now active.", messages.SUCCESS)
