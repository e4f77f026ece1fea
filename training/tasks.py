"""Celery entry points for training: each takes ids and calls a service.

CELERY_TASK_ROUTES sends run_training and score_items to the `training` queue; the others use the default
queue.
"""

from celery import shared_task

from . import execution, runs, scoring_pass


@shared_task(
    name="training.tasks.run_training",
    bind=True,
    # Acknowledge only once the run is over, and hand the message back if the worker dies mid-run; the
    # service's claim (queued -> running) makes a redelivered message a no-op, and the reaper fails the run.
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def run_training(self, run_id: int) -> str | None:
    """Execute one training run in this worker (the `training` queue, concurrency 1)."""
    run = execution.training_run_execute(run_id=run_id, worker_hostname=self.request.hostname or "")
    return run.status if run else None


@shared_task(name="training.tasks.check_retrain", ignore_result=True)
def check_retrain() -> list[int]:
    """Beat, every 15 minutes: queue a run for each project with enough new rankings."""
    return [run.pk for run in runs.training_runs_start_due()]


@shared_task(name="training.tasks.reap_stale_runs", ignore_result=True)
def reap_stale_runs() -> list[int]:
    """Beat, every minute: fail running runs whose worker stopped sending heartbeats."""
    return runs.training_runs_reap_stale()


@shared_task(
    name="training.tasks.score_items", acks_late=True, reject_on_worker_lost=True, ignore_result=True
)
def score_items(pass_id: int) -> str | None:
    """Run one scoring pass (the `training` queue: it loads the model, like a run)."""
    result = scoring_pass.scoring_pass_run(pass_id=pass_id)
    return result.status if result else None


@shared_task(name="training.tasks.check_scoring", ignore_result=True)
def check_scoring() -> list[int]:
    """Beat, every 5 minutes: queue passes for model-order projects with items their version did not score."""
    return scoring_pass.scoring_passes_queue_due()
