from django.apps import AppConfig


class AnnotationConfig(AppConfig):
    name = "annotation"
    verbose_name = "Annotation"

    def ready(self):
        from .stored_files import stored_files_follow_rows

        stored_files_follow_rows()
