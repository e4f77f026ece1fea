"""The annotation REST API. Each module owns one workflow; this file only wires them."""

from django.urls import include, path
from rest_framework.routers import DefaultRouter

from . import exports, imports, projects, quality, revisions, work

router = DefaultRouter()
router.register("projects", projects.ProjectViewSet, basename="project")
router.register("items", projects.ItemViewSet, basename="item")

urlpatterns = [
    path("projects/<int:project_id>/next/", work.NextAssignmentView.as_view(), name="assignment-next"),
    path("projects/<int:project_id>/progress/", work.ProgressView.as_view(), name="project-progress-api"),
    path("assignments/<int:assignment_id>/submit/", work.SubmitView.as_view(), name="assignment-submit"),
    path("assignments/<int:assignment_id>/skip/", work.SkipView.as_view(), name="assignment-skip"),
    path("projects/<int:project_id>/my-rankings/", revisions.MyRankingsView.as_view(), name="rankings-mine"),
    path("rankings/<int:ranking_id>/reopen/", revisions.ReopenRankingView.as_view(), name="ranking-reopen"),
    path("rankings/<int:ranking_id>/revise/", revisions.ReviseRankingView.as_view(), name="ranking-revise"),
    path("projects/<int:project_id>/import/", imports.ProjectImportView.as_view(), name="project-import"),
    path("imports/<int:job_id>/", imports.ImportJobView.as_view(), name="import-job"),
    path("projects/<int:project_id>/export/", exports.ProjectExportView.as_view(), name="project-export"),
    path(
        "projects/<int:project_id>/snapshots/",
        exports.ProjectSnapshotListView.as_view(),
        name="project-snapshots",
    ),
    path(
        "projects/<int:project_id>/agreement/",
        exports.ProjectAgreementView.as_view(),
        name="project-agreement",
    ),
    path(
        "projects/<int:project_id>/annotators/",
        quality.ProjectAnnotatorsView.as_view(),
        name="project-annotators-api",
    ),
    path(
        "projects/<int:project_id>/annotators/<int:annotator_id>/exclusion/",
        quality.AnnotatorExclusionView.as_view(),
        name="annotator-exclusion",
    ),
    path(
        "snapshots/<int:snapshot_id>/download/",
        exports.SnapshotDownloadView.as_view(),
        name="snapshot-download",
    ),
    path("", include(router.urls)),
]
