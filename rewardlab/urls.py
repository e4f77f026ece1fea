from django.contrib import admin
from django.http import JsonResponse
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from training.api import ProjectScoreView


def healthz(request):
    """Liveness probe for load balancers and docker-compose healthchecks."""
    return JsonResponse({"status": "ok"})


admin.site.site_header = "rewardlab administration"
admin.site.site_title = "rewardlab admin"
admin.site.index_title = "Projects, rankings and reward models"

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
    # Scoring sits beside the project's other endpoints, but is training's: mounted here, not by annotation.
    path("api/projects/<int:project_id>/score/", ProjectScoreView.as_view(), name="project-score"),
    path("api/", include("annotation.api.urls")),
    path("api/training/", include("training.api_urls")),
    path("training/", include("training.urls")),
    path("", include("annotation.urls")),
]
