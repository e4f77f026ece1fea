"""REST API for training runs and reward-model versions, under /api/training/."""

from django.urls import include, path
from rest_framework.routers import DefaultRouter

from . import api

router = DefaultRouter()
router.register("runs", api.TrainingRunViewSet, basename="training-run")
router.register("models", api.RewardModelViewSet, basename="reward-model")

urlpatterns = [
    path("", include(router.urls)),
]
