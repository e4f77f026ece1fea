"""The Celery application, configured from Django settings under the CELERY_ namespace."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rewardlab.settings")

app = Celery("rewardlab")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.task(name="rewardlab.health")
def health() -> str:
    """Answer "ok": proves a worker is consuming the default queue."""
    return "ok"
