"""Staff pages for training runs and reward-model versions."""

app_name = "training"
urlpatterns: list = []
