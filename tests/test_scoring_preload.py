"""The active reward model is loaded when a web worker starts or a version is activated, not by a request."""

import threading
import time

import pytest

from rewardlab import gunicorn_conf
from tests.factories import ProjectFactory
from tests.training_setup import tiny_base_model_save
from training.models import RewardModel
from training.registry import reward_model_activate
from training.scoring import scorers_follow_active, scorers_loaded, scorers_preload


def _two_versions(tmp_path):
    project = ProjectFactory()
    first = RewardModel.objects.create(
        project=project, version=1, artifact_path=str(tiny_base_model_save(tmp_path / "v1")), is_active=True
    )
    second = RewardModel.objects.create(
        project=project, version=2, artifact_path=str(tiny_base_model_save(tmp_path / "v2"))
    )
    return first, second


def _wait_for(condition, seconds=60.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.django_db
def test_preloading_loads_each_active_version_before_any_score_request(tmp_path):
    first, second = _two_versions(tmp_path)
    assert first.project_id not in scorers_loaded()

    assert scorers_preload()[first.project_id] == first.pk
    reward_model_activate(reward_model=second)
    assert scorers_preload(project_ids=[first.project_id])[first.project_id] == second.pk


@pytest.mark.django_db
def test_a_version_whose_files_are_gone_is_skipped_without_stopping_the_others(tmp_path):
    gone = RewardModel.objects.create(
        project=ProjectFactory(), version=1, artifact_path=str(tmp_path / "gone"), is_active=True
    )
    first, _ = _two_versions(tmp_path)

    loaded = scorers_preload(project_ids=[gone.project_id, first.project_id])

    assert gone.project_id not in loaded and loaded[first.project_id] == first.pk


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_web_worker_loads_a_newly_activated_version_by_itself(tmp_path):
    first, second = _two_versions(tmp_path)
    stop = threading.Event()
    thread = scorers_follow_active(interval_seconds=0.2, stop=stop)
    try:
        assert _wait_for(lambda: scorers_loaded().get(first.project_id) == first.pk)
        reward_model_activate(reward_model=second)
        assert _wait_for(lambda: scorers_loaded().get(first.project_id) == second.pk)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()


def test_gunicorn_workers_start_following_the_active_versions(monkeypatch, settings):
    started = []
    monkeypatch.setattr("training.scoring.scorers_follow_active", lambda **kw: started.append(kw))
    settings.SCORING_PRELOAD_SECONDS = 7

    gunicorn_conf.post_worker_init(worker=None)

    assert started == [{"interval_seconds": 7}]
    settings.SCORING_PRELOAD_SECONDS = 0
    gunicorn_conf.post_worker_init(worker=None)
    assert len(started) == 1
