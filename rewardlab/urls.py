from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpResponsePermanentRedirect, JsonResponse
from django.templatetags.static import static
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from common.pages import mail_configured
from training import staff_home
from training.api import ProjectScoreView


def healthz(request):
    """Liveness probe for load balancers and docker-compose healthchecks."""
    return JsonResponse({"status": "ok"})


def favicon(request):
    """Browsers ask for /favicon.ico on pages that name no icon (the admin's, the API's)."""
    return HttpResponsePermanentRedirect(static("img/favicon.svg"))


admin.site.site_header = "rewardlab administration"
admin.site.site_title = "rewardlab admin"
admin.site.index_title = "Projects, rankings and reward models"

# django.contrib.auth.urls, with the password-reset pages only where mail is configured.
accounts = [
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password_change/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path("password_change/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
    path("password_reset/", mail_configured(auth_views.PasswordResetView.as_view()), name="password_reset"),
    path(
        "password_reset/done/",
        mail_configured(auth_views.PasswordResetDoneView.as_view()),
        name="password_reset_done",
    ),
    path(
        "reset/<uidb64>/<token>/",
        mail_configured(auth_views.PasswordResetConfirmView.as_view()),
        name="password_reset_confirm",
    ),
    path(
        "reset/done/",
        mail_configured(auth_views.PasswordResetCompleteView.as_view()),
        name="password_reset_complete",
    ),
]

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("favicon.ico", favicon, name="favicon"),
    path("admin/", admin.site.urls),
    path("accounts/", include(accounts)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
    # Scoring sits beside the project's other endpoints, but is training's: mounted here, not by annotation.
    path("api/projects/<int:project_id>/score/", ProjectScoreView.as_view(), name="project-score"),
    path("api/", include("annotation.api.urls")),
    path("api/training/", include("training.api_urls")),
    path("training/", include("training.urls")),
    # The staff home shows annotation's and training's state together, so it is mounted here.
    path("staff/", staff_home.staff_home, name="staff-home"),
    path(
        "staff/projects/<int:project_id>/guidelines/",
        staff_home.project_guidelines,
        name="staff-project-guidelines",
    ),
    path("", include("annotation.urls")),
]
