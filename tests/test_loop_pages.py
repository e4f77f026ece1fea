"""Staff see the loop: the disputed items with every ranking and the model's rewards, and the loop page."""

import pytest
from django.utils import timezone

from annotation.assignment import assignment_next, ranking_submit
from annotation.models import Item
from tests.factories import STAFF_PERMISSIONS, ItemFactory, ProjectFactory, UserFactory
from training.models import RewardModel, ScoringPass, TrainingRun

pytestmark = pytest.mark.django_db


def _rank(project, username, positions):
    annotator = UserFactory(username=username)
    lease = assignment_next(annotator=annotator, project=project)
    by_position = dict(Item.objects.get(pk=lease.item_id).answers.values_list("position", "id"))
    ranking_submit(assignment_id=lease.pk, annotator=annotator, order=[[by_position[p]] for p in positions])


def test_staff_see_a_disputed_item_with_its_answers_each_ranking_and_the_models_rewards(client):
    project = ProjectFactory(rankings_per_item=2, max_rankings_per_item=4)
    item = ItemFactory(project=project, answers=["First answer", "Second answer", "Third answer"])
    answers = list(item.answers.order_by("position"))
    Item.objects.filter(pk=item.pk).update(
        model_rewards={str(a.pk): r for a, r in zip(answers, [0.25, -1.5, 2.0], strict=True)},
        scored_version=3,
    )
    _rank(project, "ann", [0, 1, 2])
    _rank(project, "bob", [2, 1, 0])
    ItemFactory(project=project)  # not disputed: not listed
    client.force_login(UserFactory(is_staff=True, permissions=STAFF_PERMISSIONS))

    page = client.get(f"/projects/{project.pk}/disputes/").content.decode()

    assert f"Item {item.pk}" in page and "annotators split" in page
    assert "Second answer" in page and "-1.500" in page and "(v3)" in page
    assert "ann</span>: 1 &gt; 2 &gt; 3" in page and "bob</span>: 3 &gt; 2 &gt; 1" in page
    assert page.count('class="card dispute"') == 1


def test_annotators_cannot_open_the_disputes_page(client):
    project = ProjectFactory()
    client.force_login(UserFactory())
    assert client.get(f"/projects/{project.pk}/disputes/").status_code == 403


def test_the_loop_page_shows_the_work_order_last_pass_spread_and_accuracy_against_rankings(client):
    project = ProjectFactory(work_order="model", max_rankings_per_item=5)
    for version, rows, accuracy in [(1, 120, 0.61), (2, 300, 0.67)]:
        run = TrainingRun.objects.create(
            project=project, trigger="manual", status="succeeded", train_row_count=rows
        )
        model = RewardModel.objects.create(
            project=project,
            version=version,
            training_run=run,
            artifact_path="/nowhere",
            pairwise_accuracy=accuracy,
            eval_pairs=80,
            is_active=version == 2,
        )
    ScoringPass.objects.create(
        project=project,
        reward_model=model,
        version=2,
        status="succeeded",
        items_needing=40,
        items_scored=38,
        items_disputed=3,
        seconds=1.5,
        informativeness={"min": 0.1, "q1": 0.4, "median": 0.6, "q3": 0.8, "max": 0.99},
        finished_at=timezone.now(),
    )
    client.force_login(UserFactory(is_staff=True, permissions=STAFF_PERMISSIONS))

    page = client.get(f"/training/projects/{project.pk}/loop/").content.decode()

    assert "Model: most informative" in page and "up to 5 rankings" in page
    assert "<dd>v2</dd>" in page and "<dd>40</dd>" in page and "<dd>38</dd>" in page
    assert '<dd id="items-disputed">3</dd>' in page
    assert "0.600" in page and "0.990" in page
    assert "<td>120</td><td>0.610</td>" in page and "<td>300</td><td>0.670</td>" in page


def test_a_model_project_serves_its_items_in_score_order_over_the_api(annotator_client, annotator):
    project = ProjectFactory(work_order="model", rankings_per_item=1)
    low, high, middle = (ItemFactory(project=project, model_priority=p) for p in (0.2, 0.9, 0.6))
    served = []
    for _ in range(3):
        body = annotator_client.post(f"/api/projects/{project.pk}/next/", format="json").json()
        served.append(body["assignment"]["item_id"])
        order = [[answer["id"]] for answer in body["assignment"]["answers"]]
        annotator_client.post(
            f"/api/assignments/{body['assignment']['id']}/submit/", {"order": order}, format="json"
        )
    assert served == [high.pk, middle.pk, low.pk]


def test_the_progress_page_names_the_work_order_and_links_the_loop(client):
    project = ProjectFactory(work_order="model")
    client.force_login(UserFactory(is_staff=True, permissions=STAFF_PERMISSIONS))
    page = client.get(f"/projects/{project.pk}/progress/").content.decode()
    assert "Model: most informative" in page
    assert f"/training/projects/{project.pk}/loop/" in page and f"/projects/{project.pk}/disputes/" in page
