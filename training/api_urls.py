"""REST API for training runs, reward-model versions and evaluation suites, under /api/training/."""

from django.urls import include, path
from rest_framework.routers import DefaultRouter

from . import api, api_suites

router = DefaultRouter()
router.register("runs", api.TrainingRunViewSet, basename="training-run")
router.register("models", api.RewardModelViewSet, basename="reward-model")
router.register("suites", api_suites.EvaluationSuiteViewSet, basename="evaluation-suite")

urlpatterns = [
    path("", include(router.urls)),
]
