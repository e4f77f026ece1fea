"""The staff home: projects with progress, agreement and active model; creating one; guidelines preview."""

import pytest

from annotation.figures import agreement_figures_refresh
from annotation.models import Item, Project
from tests.factories import ItemFactory, ProjectFactory, RankingFactory, UserFactory
from training.models import RewardModel

pytestmark = pytest.mark.django_db


def test_staff_see_each_project_with_progress_agreement_and_active_model(client, staff):
    project = ProjectFactory(name="Helpfulness", rankings_per_item=2)
    item = ItemFactory(project=project)
    first = RankingFactory(item=item)
    RankingFactory(item=item, order=first.order)
    Item.objects.filter(pk=item.pk).update(human_ranking_count=2)  # the factory sets no counters
    agreement_figures_refresh(project=project)
    RewardModel.objects.create(
        project=project, version=3, artifact_path="/m", pairwise_accuracy=0.712, is_active=True
    )
    ProjectFactory(name="Fresh")
    client.force_login(staff)

    page = client.get(client.get("/")["Location"]).content.decode()

    table = page[page.index("staff-projects") :]
    assert "Helpfulness" in table and "2 / 2 rankings (100%)" in table, table[:1500]
    assert "1.000" in page and "v3, accuracy 0.712" in page
    assert "Fresh" in page and "none yet" in page
    for link in (f"/projects/{project.pk}/data/", f"/training/projects/{project.pk}/runs/", "/admin/"):
        assert link in page


def test_staff_create_a_project_and_preview_then_save_its_guidelines(client, staff):
    client.force_login(staff)

    created = client.post("/staff/", {"name": "Harmlessness", "guidelines": ""})
    project = Project.objects.get(name="Harmlessness")
    preview = client.post(
        created["Location"],
        {"name": "Harmlessness", "guidelines": "Prefer **safe** answers.", "preview": "1"},
    )
    project.refresh_from_db()
    assert project.guidelines == ""  # a preview saves nothing
    saved = client.post(
        created["Location"], {"name": "Harmlessness", "guidelines": "Prefer **safe** answers.", "save": "1"}
    )

    assert created["Location"] == f"/staff/projects/{project.pk}/guidelines/"
    assert "<strong>safe</strong>" in preview.content.decode()
    assert saved.status_code == 302
    project.refresh_from_db()
    assert project.guidelines == "Prefer **safe** answers."


def test_the_staff_home_is_for_staff(client):
    client.force_login(UserFactory())
    assert client.get("/staff/").status_code == 403
