"""Decoder training options of a project (LoRA, reward centring, warm starts), checked where they enter."""

import pytest

from annotation.models import Project
from annotation.projects import ProjectInvalid, project_save
from tests.factories import ProjectFactory
from tests.test_training_runs import queued_run, roots  # noqa: F401  (fixtures)
from tests.training_setup import TINY_ARGUMENTS, learnable_rankings_create
from training.execution import _engine_arguments, _warm_start_arguments, training_run_execute
from training.models import RewardModel, TrainingRun
from training.reward_model import read_metadata

pytestmark = pytest.mark.django_db

BAD_ARGUMENTS = [
    ({"lora_r": -1}, "'lora_r' must be from 0"),
    ({"lora_r": 2.5}, "'lora_r' must be a whole number"),
    ({"lora_alpha": 0}, "lora_alpha must be greater than 0"),
    ({"lora_target_modules": "q_proj,--help"}, "comma-separated module names"),
    ({"lora_target_modules": ""}, "comma-separated module names"),
    ({"lora_target_modules": ["q_proj"]}, "'lora_target_modules' must be a string"),
    ({"center_rewards_coefficient": -0.01}, "center_rewards_coefficient must be 0 or more"),
    ({"center_rewards_coefficient": float("nan")}, "finite number"),
    ({"init_from_active": "yes"}, "'init_from_active' must be true or false"),
    ({"init_from_active": 1}, "'init_from_active' must be true or false"),
]


@pytest.mark.parametrize(("arguments", "message"), BAD_ARGUMENTS)
def test_bad_decoder_training_options_are_refused_and_nothing_is_saved(arguments, message):
    with pytest.raises(ProjectInvalid, match=message):
        project_save(project=Project(name="p", training_arguments=arguments))

    assert not Project.objects.exists()


def test_decoder_training_options_are_kept_and_become_engine_flags():
    arguments = {
        "base_model": "Qwen/Qwen2.5-0.5B",
        "lora_r": 16,
        "lora_alpha": 32,
        "lora_target_modules": "q_proj,k_proj,v_proj,o_proj",
        "center_rewards_coefficient": 0.01,
        "init_from_active": True,
    }
    project = project_save(project=Project(name="p", training_arguments=arguments))

    project.refresh_from_db()
    assert project.training_arguments == arguments
    flags = _engine_arguments(project.training_arguments)
    assert flags == [
        "--base-model",
        "Qwen/Qwen2.5-0.5B",
        "--lora-r",
        "16",
        "--lora-alpha",
        "32.0",
        "--lora-target-modules",
        "q_proj,k_proj,v_proj,o_proj",
        "--center-rewards-coefficient",
        "0.01",
    ]
    assert project_save(project=Project(name="q", training_arguments={"lora_target_modules": "all-linear"}))


@pytest.mark.slow
def test_a_run_asked_to_continue_starts_from_the_active_version(roots, tiny_base):  # noqa: F811
    project = ProjectFactory(training_arguments={**TINY_ARGUMENTS, "base_model": str(tiny_base)})
    learnable_rankings_create(project=project, count=24)
    # No active version yet: the first run asked to continue starts from the base model.
    first_run = queued_run(project, init_from_active=True)
    assert _warm_start_arguments(first_run) == []
    first = training_run_execute(run_id=first_run.pk).reward_model
    assert first.is_active and read_metadata(first.artifact_path)["init_from"] is None

    second_run = queued_run(project, init_from_active=True, epochs=1)
    assert _warm_start_arguments(second_run) == ["--init-from", first.artifact_path]
    run = training_run_execute(run_id=second_run.pk)

    run.refresh_from_db()
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    meta = read_metadata(run.reward_model.artifact_path)
    assert meta["init_from"] == first.artifact_path and meta["base_model"] == str(tiny_base)
    # Without the option, the same project trains from its base model again.
    assert _warm_start_arguments(queued_run(project)) == []
    assert RewardModel.objects.filter(project=project).count() == 2
