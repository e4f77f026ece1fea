"""Evaluation suites (upload, rule, delete), the fixed evaluation split, and what registration records:
suite figures, promotion held back by a suite rule, and the pairs whose order flipped since the last version.
"""

import json
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from tests.evaluation_setup import suite_rows
from tests.factories import ImportBatchFactory, ItemFactory, ProjectFactory, RankingFactory, UserFactory
from tests.training_setup import best_first_order, learnable_rankings_create
from training import execution, registry
from training.models import EvaluationSuite, RewardModel, SuiteResult, TrainingRun
from training.suites import SuiteFile, SuiteInvalid, SuiteNameTaken, evaluation_suite_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_browser(staff):
    client = Client()
    client.force_login(staff)
    return client


def upload(name: str, rows: list[dict] | str) -> SimpleUploadedFile:
    text = rows if isinstance(rows, str) else "".join(json.dumps(row) + "\n" for row in rows)
    return SimpleUploadedFile(name, text.encode(), content_type="application/octet-stream")


def test_staff_upload_a_suite_and_see_its_pairs_and_subsets(media, staff_browser):
    project = ProjectFactory()

    response = staff_browser.post(
        reverse("training:suite-upload", args=[project.pk]),
        {"name": "safety", "file": upload("rb.jsonl", suite_rows(count=12)), "holds_back_promotion": "on"},
        follow=True,
    )

    suite = EvaluationSuite.objects.get(project=project)
    assert (suite.name, suite.items, suite.pairs, suite.format) == ("safety", 12, 12, "pairs")
    assert suite.subsets == {"good-vs-bad": 6, "good-vs-neutral": 6}
    assert suite.holds_back_promotion and len(suite.sha256) == 64
    assert (media / suite.file.name).is_file()
    page = response.content.decode()
    assert "Suite “safety”: 12 pairs in 12 items" in page
    assert "good-vs-bad" in page and "must not be worse" in page


def test_a_file_the_readers_refuse_is_not_stored_and_says_where(media, staff_browser):
    project = ProjectFactory()
    rows = "".join(json.dumps(row) + "\n" for row in suite_rows(count=2)) + '{"prompt": "x", "chosen": 1}\n'

    response = staff_browser.post(
        reverse("training:suite-upload", args=[project.pk]),
        {"name": "bad", "file": upload("bad.jsonl", rows)},
        follow=True,
    )

    assert "bad.jsonl:3:" in response.content.decode()
    assert not EvaluationSuite.objects.exists()
    assert not [path for path in media.rglob("*") if path.is_file()]


def test_a_suite_needs_pairs_and_a_name_of_its_own(media, staff):
    project = ProjectFactory()
    evaluation_suite_create(project=project, upload=upload("a.jsonl", suite_rows(count=2)), name="a")
    unranked = json.dumps({"prompt": "q", "answers": ["x", "y"]}) + "\n"

    with pytest.raises(SuiteInvalid, match="states no preference"):
        evaluation_suite_create(project=project, upload=upload("u.jsonl", unranked), name="u")
    with pytest.raises(SuiteNameTaken, match="already has a suite named “a”"):
        evaluation_suite_create(project=project, upload=upload("a2.jsonl", suite_rows(count=2)), name=" a ")
    with pytest.raises(SuiteInvalid, match="needs a name"):
        evaluation_suite_create(project=project, upload=upload("b.jsonl", suite_rows(count=2)), name=" ")
    assert list(EvaluationSuite.objects.values_list("name", flat=True)) == ["a"]


def test_annotators_cannot_upload_suites(media, annotator):
    client = Client()
    client.force_login(annotator)
    project = ProjectFactory()

    response = client.post(
        reverse("training:suite-upload", args=[project.pk]),
        {"name": "x", "file": upload("x.jsonl", suite_rows(count=2))},
    )

    assert response.status_code == 403
    assert not EvaluationSuite.objects.exists()


def test_the_rule_can_be_turned_on_and_a_deleted_suite_takes_its_file_and_figures(
    media, staff_browser, django_capture_on_commit_callbacks
):
    project = ProjectFactory()
    suite = evaluation_suite_create(project=project, upload=upload("s.jsonl", suite_rows(count=2)), name="s")
    version = RewardModel.objects.create(project=project, version=1, artifact_path="/nowhere")
    SuiteResult.objects.create(reward_model=version, suite=suite, pairwise_accuracy=0.5, pairs=2)
    stored = media / suite.file.name

    staff_browser.post(reverse("training:suite-rule", args=[suite.pk]), {"holds_back": "1"})
    suite.refresh_from_db()
    assert suite.holds_back_promotion
    with django_capture_on_commit_callbacks(execute=True):
        staff_browser.post(reverse("training:suite-delete", args=[suite.pk]))

    assert not EvaluationSuite.objects.exists() and not SuiteResult.objects.exists()
    assert not stored.exists()


def eval_items(run: TrainingRun, directory: Path) -> set[int]:
    """The items of the run's evaluation file, from a fresh export of its project."""
    snapshot = execution._rankings_snapshot(project=run.project)
    _, eval_path = execution._training_files_write(run=run, snapshot=snapshot, directory=directory)
    return {json.loads(line)["item_id"] for line in eval_path.read_text().splitlines()}


def test_the_evaluation_split_keeps_its_members_when_data_is_added(media, tmp_path):
    project = ProjectFactory()
    first_items = learnable_rankings_create(project=project, count=40)
    run = TrainingRun.objects.create(project=project, trigger="api", arguments={"eval_fraction": 0.25})
    before = eval_items(run, tmp_path / "before")

    learnable_rankings_create(project=project, count=40, seed=1)  # new items
    second_annotator = UserFactory()
    for item in first_items[:20]:  # and new rankings of old ones
        RankingFactory(item=item, annotator=second_annotator, order=best_first_order(item))
    after = eval_items(run, tmp_path / "after")

    assert before and before < after  # every member stays, new items join
    assert all(item.pk in after for item in first_items if item.pk in before)
    # A larger fraction only adds members: an item's place is decided by its own hash alone.
    run.arguments = {"eval_fraction": 0.5}
    assert after < eval_items(run, tmp_path / "larger")


def test_evaluation_rows_of_imported_items_name_their_import_batch(media, tmp_path):
    project = ProjectFactory()
    batch = ImportBatchFactory(project=project, file_name="hh.jsonl")
    items = [ItemFactory(project=project, import_batch=batch if n % 2 else None) for n in range(40)]
    for item in items:
        RankingFactory(item=item)
    run = TrainingRun.objects.create(project=project, trigger="api", arguments={"eval_fraction": 0.5})

    snapshot = execution._rankings_snapshot(project=project)
    _, eval_path = execution._training_files_write(run=run, snapshot=snapshot, directory=tmp_path)

    rows = [json.loads(line) for line in eval_path.read_text().splitlines()]
    imported = {item.pk for item in items if item.import_batch_id}
    assert rows and {row["item_id"] for row in rows} & imported
    for row in rows:
        assert row.get("import_batch") == (f"#{batch.pk} hh.jsonl" if row["item_id"] in imported else None)


# Registration, with the engine's reports written by hand.


def figures(accuracy: float, subsets: dict | None = None) -> dict:
    return {"pairwise_accuracy": accuracy, "pairs": 10, "subsets": subsets or {}}


@pytest.fixture
def ruled_suite(media):
    project = ProjectFactory()
    suite = evaluation_suite_create(
        project=project,
        upload=upload("s.jsonl", suite_rows(count=4)),
        name="safety",
        holds_back_promotion=True,
    )
    return project, suite


def finished_run(project, suite_figures: dict, *, accuracy: float = 0.9) -> TrainingRun:
    return TrainingRun.objects.create(
        project=project,
        trigger="api",
        status=TrainingRun.Status.RUNNING,
        result_metrics={"eval": {"pairwise_accuracy": accuracy, "pairs": 30}, "suites": suite_figures},
    )


def test_a_suite_rule_holds_back_a_version_that_is_worse_on_the_suite(ruled_suite, monkeypatch, tmp_path):
    project, suite = ruled_suite
    active = RewardModel.objects.create(project=project, version=1, artifact_path="/v1", is_active=True)
    SuiteResult.objects.create(reward_model=active, suite=suite, pairwise_accuracy=0.75, pairs=4)
    calls = []

    def evaluate(**kwargs):
        calls.append(kwargs)
        return {"pairwise_accuracy": 0.8, "suites": {}}

    monkeypatch.setattr(registry, "reward_model_evaluate", evaluate)
    run = finished_run(project, {str(suite.pk): figures(0.5, {"good-vs-bad": 0.5})})

    new = registry.reward_model_register(
        run=run,
        artifact_path=tmp_path / "v2",
        eval_path=tmp_path / "eval.jsonl",
        suites=[SuiteFile(suite, Path("/s"))],
    )

    assert not new.is_active
    assert new.not_active_reason == "Accuracy 0.500 on suite “safety” is below the active v1's 0.750."
    assert calls and calls[0]["suites"] == []  # the active version's suite figures were reused
    result = SuiteResult.objects.get(reward_model=new, suite=suite)
    assert (result.pairwise_accuracy, result.figures["subsets"]) == (0.5, {"good-vs-bad": 0.5})


def test_without_the_rule_a_version_worse_on_a_suite_is_promoted(ruled_suite, monkeypatch, tmp_path):
    project, suite = ruled_suite
    EvaluationSuite.objects.filter(pk=suite.pk).update(holds_back_promotion=False)
    suite.refresh_from_db()
    active = RewardModel.objects.create(project=project, version=1, artifact_path="/v1", is_active=True)
    SuiteResult.objects.create(reward_model=active, suite=suite, pairwise_accuracy=0.75, pairs=4)
    monkeypatch.setattr(registry, "reward_model_evaluate", lambda **kwargs: {"pairwise_accuracy": 0.8})
    run = finished_run(project, {str(suite.pk): figures(0.5)})

    new = registry.reward_model_register(
        run=run,
        artifact_path=tmp_path / "v2",
        eval_path=tmp_path / "eval.jsonl",
        suites=[SuiteFile(suite, Path("/s"))],
    )

    assert new.is_active and new.not_active_reason == ""


def test_the_active_version_is_scored_on_a_ruled_suite_it_has_no_figures_for(
    ruled_suite, monkeypatch, tmp_path
):
    project, suite = ruled_suite
    RewardModel.objects.create(project=project, version=1, artifact_path="/v1", is_active=True)
    calls = []

    def evaluate(**kwargs):
        calls.append(kwargs)
        return {"pairwise_accuracy": 0.8, "suites": {str(suite.pk): figures(0.6, {"good-vs-bad": 0.6})}}

    monkeypatch.setattr(registry, "reward_model_evaluate", evaluate)
    suite_file = SuiteFile(suite, tmp_path / "suite.jsonl")
    run = finished_run(project, {str(suite.pk): figures(0.7)})

    new = registry.reward_model_register(
        run=run, artifact_path=tmp_path / "v2", eval_path=tmp_path / "eval.jsonl", suites=[suite_file]
    )

    assert calls[0]["suites"] == [suite_file] and calls[0]["artifact_path"] == "/v1"
    assert new.is_active  # 0.9 >= 0.8 on the split, 0.7 >= 0.6 on the suite
    stored = {r.reward_model.version: r.pairwise_accuracy for r in SuiteResult.objects.filter(suite=suite)}
    assert stored == {1: 0.6, 2: 0.7}


def margins_write(directory: Path, margins: dict[tuple[str, str, str], float]) -> Path:
    path = directory / "evaluation" / "held_out.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text(
        "".join(
            json.dumps({"group": g, "better": b, "worse": w, "margin": m}) + "\n"
            for (g, b, w), m in margins.items()
        )
    )
    return directory


def test_a_new_version_records_the_pairs_whose_order_flipped_since_the_previous_one(
    media, monkeypatch, tmp_path
):
    project = ProjectFactory()
    older = margins_write(
        tmp_path / "v1", {("1", "10", "11"): 0.5, ("1", "10", "12"): -0.2, ("2", "20", "21"): 1.0}
    )
    newer = margins_write(
        tmp_path / "v2",
        {("1", "10", "11"): -0.1, ("1", "10", "12"): 0.9, ("2", "20", "21"): 2.0, ("3", "30", "31"): 1},
    )
    RewardModel.objects.create(project=project, version=1, artifact_path=str(older), is_active=True)
    monkeypatch.setattr(registry, "reward_model_evaluate", lambda **kwargs: {"pairwise_accuracy": 0.5})

    new = registry.reward_model_register(
        run=finished_run(project, {}, accuracy=0.6), artifact_path=newer, eval_path=tmp_path / "eval.jsonl"
    )

    flips = new.flips
    assert (flips["version"], flips["compared_pairs"], flips["flipped"]) == (1, 3, 2)
    assert (flips["now_right"], flips["now_wrong"]) == (1, 1)
    # The pair whose margin moved most comes first, with both versions' margins.
    assert flips["sample"][0] == {
        "item": "1",
        "better": "10",
        "worse": "12",
        "margin": 0.9,
        "previous_margin": -0.2,
    }
