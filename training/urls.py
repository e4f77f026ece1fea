"""Staff pages for training runs and reward-model versions, under /training/."""

from django.urls import path

from . import views

app_name = "training"
urlpatterns = [
    path("", views.index, name="index"),
    path("projects/<int:project_id>/runs/", views.project_runs, name="project-runs"),
    path("projects/<int:project_id>/retrain/", views.project_retrain, name="project-retrain"),
    path("projects/<int:project_id>/models/", views.project_models, name="project-models"),
    path("projects/<int:project_id>/models/compare/", views.versions_compare, name="versions-compare"),
    path("projects/<int:project_id>/suites/", views.project_suites, name="project-suites"),
    path("projects/<int:project_id>/loop/", views.project_loop, name="project-loop"),
    path("projects/<int:project_id>/suites/upload/", views.suite_upload, name="suite-upload"),
    path("suites/<int:suite_id>/rule/", views.suite_rule, name="suite-rule"),
    path("suites/<int:suite_id>/delete/", views.suite_delete, name="suite-delete"),
    path("runs/<int:run_id>/progress.json", views.run_progress, name="run-progress"),
    path("runs/<int:run_id>/cancel/", views.run_cancel, name="run-cancel"),
    path("runs/<int:run_id>/retry/", views.run_retry, name="run-retry"),
    path("models/<int:model_id>/activate/", views.model_activate, name="model-activate"),
    path("models/<int:model_id>/download/", views.model_download, name="model-download"),
]
