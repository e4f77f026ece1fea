from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "training"
    verbose_name = "Reward-model training"

    def ready(self):
        from annotation.signals import project_deleting

        from .model_files import model_files_follow_rows
        from .runs import project_delete_refuse_while_training

        model_files_follow_rows()
        project_deleting.connect(
            project_delete_refuse_while_training, dispatch_uid="training-runs-unfinished"
        )
