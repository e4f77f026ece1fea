"""The staff project data page: agreement figures, a download button per format, the snapshots."""

import re

import pytest
from django.test import Client

from annotation.exports import FORMATS, annotator_pseudonym, export_snapshot_create
from tests.factories import ItemFactory, ProjectFactory, RankingFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def project(db, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    project = ProjectFactory(name="Data page")
    item = ItemFactory(project=project)
    ids = [a.pk for a in item.answers.order_by("position")]
    project.people = [UserFactory(username="ada"), UserFactory(username="bob")]
    RankingFactory(item=item, annotator=project.people[0], order=[[i] for i in ids])
    RankingFactory(item=item, annotator=project.people[1], order=[[i] for i in ids])
    return project


def client_for(user):
    client = Client()
    client.force_login(user)
    return client


def test_staff_see_agreement_figures_with_names_behind_the_pseudonyms(project, staff):
    page = client_for(staff).get(f"/projects/{project.pk}/data/")
    assert page.status_code == 200
    html = page.content.decode()
    assert re.search(r'id="mean-tau-b">1\.000<', html)
    assert re.search(r'id="agreement-items">1<', html)
    assert "ada" in html and annotator_pseudonym(project.people[0].pk) in html


def test_there_is_one_download_button_per_format_posting_to_the_export_api(project, staff):
    html = client_for(staff).get(f"/projects/{project.pk}/data/").content.decode()
    assert f'action="/api/projects/{project.pk}/export/"' in html
    buttons = re.findall(r'<button type="submit" class="primary" name="format" value="([^"]+)"', html)
    assert buttons == FORMATS
    assert all(f'<option value="{c}">' in html for c in ["jsonl", "jsonl.gz", "parquet"])


def test_snapshots_are_listed_with_download_links(project, staff):
    snapshot = export_snapshot_create(project=project, format="pairs")
    html = client_for(staff).get(f"/projects/{project.pk}/data/").content.decode()
    assert f'href="/api/snapshots/{snapshot.pk}/download/"' in html
    assert snapshot.sha256[:12] in html


def test_each_snapshot_shows_its_file_type(project, staff):
    export_snapshot_create(project=project, format="pairs", container="parquet")
    html = client_for(staff).get(f"/projects/{project.pk}/data/").content.decode()
    table = html[html.index('id="snapshots"') :]
    assert ">File type</th>" in table
    assert re.search(r'<td title="Parquet">\.parquet</td>', table)
    assert ".jsonl" not in table


def test_annotators_are_refused_and_visitors_sent_to_log_in(project):
    assert client_for(project.people[0]).get(f"/projects/{project.pk}/data/").status_code == 403
    response = Client().get(f"/projects/{project.pk}/data/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_figures_are_kept_and_worked_out_again_only_when_the_data_changed(project, staff):
    from annotation.models import AgreementFigures

    page = client_for(staff)
    page.get(f"/projects/{project.pk}/data/")
    first = AgreementFigures.objects.get(project=project)
    page.get(f"/projects/{project.pk}/data/")
    assert AgreementFigures.objects.get(project=project).computed_at == first.computed_at
    item = project.items.get()
    RankingFactory(item=item, order=[[a.pk] for a in item.answers.order_by("-position")])
    html = page.get(f"/projects/{project.pk}/data/").content.decode()
    assert AgreementFigures.objects.get(project=project).computed_at > first.computed_at
    assert re.search(r'id="agreement-items">1<', html) and 'id="mean-tau-b">1.000<' not in html


def test_a_large_project_queues_its_figures_and_says_so(
    project, monkeypatch, django_capture_on_commit_callbacks
):
    from annotation import figures, tasks
    from annotation.figures import agreement_figures_refresh

    queued = []
    monkeypatch.setattr(figures, "AGREEMENT_INLINE_MAX_RANKINGS", 1)
    monkeypatch.setattr(tasks.agreement_figures_write, "delay", queued.append)
    # The API's figures ask for the permission to see rankings, as the admin does.
    staff = client_for(UserFactory(is_staff=True, permissions=["annotation.view_ranking"]))
    with django_capture_on_commit_callbacks(execute=True):
        html = staff.get(f"/projects/{project.pk}/data/").content.decode()
        api = staff.get(f"/api/projects/{project.pk}/agreement/")
    assert "being worked out" in html and 'id="mean-tau-b"' not in html
    assert api.status_code == 202
    assert queued == [project.pk]  # once, however often the page is opened

    agreement_figures_refresh(project=project)  # what the queued task does
    html = staff.get(f"/projects/{project.pk}/data/").content.decode()
    assert 'id="mean-tau-b">1.000<' in html and "being worked out" not in html
    assert staff.get(f"/api/projects/{project.pk}/agreement/").json()["stale"] is False
