"""A real worker process consumes the default queue from Redis and sees the test database."""

import time

import pytest

from rewardlab.celery import health

pytestmark = pytest.mark.celery_worker


def test_a_real_worker_runs_the_health_task(live_celery_worker):
    worker = live_celery_worker(queues="default")
    health.delay()
    # No result backend is configured by default: the worker log proves the task ran and succeeded.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "succeeded" not in worker.log():
        time.sleep(0.2)
    assert "rewardlab.health" in worker.log()
    assert "succeeded" in worker.log()
