"""Gunicorn settings shared by `make run` (Procfile), docker-compose and the image: `gunicorn -c python:...`.

Exports and snapshot downloads stream for as long as the data takes (~25 s for 3 million pairs, more on a
busy host or a slow link). Gunicorn's sync workers are killed, and the download cut short mid-file, when
one request outlives `timeout`, which is 30 s by default; so it is raised here, and WEB_TIMEOUT sets it.
Imports do not need it: large ones run on the Celery worker (annotation.imports).
"""

import os

timeout = int(os.environ.get("WEB_TIMEOUT", "600"))
graceful_timeout = 30
accesslog = "-"


def post_worker_init(worker):
    """Load the active reward models in the background, and each newly activated one (training.scoring)."""
    from django.conf import settings

    from training.scoring import scorers_follow_active

    if settings.SCORING_PRELOAD_SECONDS > 0:
        scorers_follow_active(interval_seconds=settings.SCORING_PRELOAD_SECONDS)
