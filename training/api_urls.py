"""REST API for training runs, reward-model versions and scoring."""

urlpatterns: list = []
