"""`make run` loads the demo once: a project with real items waiting, and users who can log in."""

import io
import json

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command
from django.test import RequestFactory

from annotation.models import ImportBatch, Item, Project, Ranking

pytestmark = pytest.mark.django_db


def _sign_in(username: str, password: str):
    # As the login form does: with the request, which the sign-in throttle (django-axes) needs.
    return authenticate(RequestFactory().post("/accounts/login/"), username=username, password=password)


def test_demo_loads_once_with_items_users_and_printed_logins(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    first = io.StringIO()
    call_command("load_demo", stdout=first)
    logins_after_first = json.loads((tmp_path / "demo-logins.json").read_text())
    second = io.StringIO()
    call_command("load_demo", stdout=second)
    assert "is already loaded" in second.getvalue()
    # The items and the gold items, once: the second run imports nothing, not even an empty batch.
    assert ImportBatch.objects.count() == 2

    project = Project.objects.get()
    items = Item.objects.filter(project=project)
    assert items.count() >= 30
    assert all(2 < item.answers.count() <= 5 for item in items)
    assert any(len(item.conversation) > 1 for item in items), "some demo items are multi-turn"
    assert Ranking.objects.filter(source=Ranking.Source.IMPORT).exists()
    assert not Ranking.objects.filter(source=Ranking.Source.HUMAN).exists()
    assert items.filter(gold_order__isnull=False).count() == 3  # annotators' care is measured from the start
    assert "36 demo items and 3 gold items" in first.getvalue()

    logins = json.loads((tmp_path / "demo-logins.json").read_text())
    assert set(logins) == {"admin", "alice", "bob"}
    assert logins == logins_after_first  # passwords that still work are kept
    for username, password in logins.items():
        assert f"{username:<6} / {password}" in first.getvalue()
        assert _sign_in(username, password) is not None
    assert _sign_in("admin", logins["admin"]).is_staff
    assert not _sign_in("alice", logins["alice"]).is_staff
