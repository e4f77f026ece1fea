"""The annotation REST API. Each module owns one workflow; this file only wires them."""

from django.urls import include, path
from rest_framework.routers import DefaultRouter

from . import imports, projects

router = DefaultRouter()
router.register("projects", projects.ProjectViewSet, basename="project")
router.register("items", projects.ItemViewSet, basename="item")

urlpatterns = [
    path("projects/<int:project_id>/import/", imports.ProjectImportView.as_view(), name="project-import"),
    path("", include(router.urls)),
]
