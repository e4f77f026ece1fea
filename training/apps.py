from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "training"
    verbose_name = "Reward-model training"

    def ready(self):
        from .model_files import model_files_follow_rows

        model_files_follow_rows()
