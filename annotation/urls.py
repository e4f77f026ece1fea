"""Pages for annotators and staff."""

from django.urls import path

from . import quality_views, rank_views, staff_views, views

urlpatterns = [
    path("", views.home, name="home"),
    path("projects/<int:project_id>/rank/", rank_views.rank, name="rank"),
    path("projects/<int:project_id>/mine/", rank_views.my_rankings, name="my-rankings"),
    path(
        "projects/<int:project_id>/annotators/", quality_views.project_annotators, name="project-annotators"
    ),
    path(
        "projects/<int:project_id>/annotators/<int:annotator_id>/exclusion/",
        quality_views.project_annotator_exclusion,
        name="project-annotator-exclusion",
    ),
    path("projects/<int:project_id>/progress/", staff_views.project_progress, name="project-progress"),
    path("projects/<int:project_id>/data/", staff_views.project_data, name="project-data"),
    path("projects/<int:project_id>/disputes/", staff_views.project_disputes, name="project-disputes"),
]
