"""A `model`-order project in a real Chromium: the ranking page serves its items in score order."""

import pytest
from django.urls import reverse

from annotation.models import Answer
from tests.factories import ItemFactory, ProjectFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery staple"
NEW_ITEM_SHOWN = """(previous) => {
  const ids = [...document.querySelectorAll('[data-answers] .answer-card')].map((card) => card.dataset.id);
  return ids.length > 0 && !ids.some((id) => previous.includes(id));
}"""


def _shown_item(page) -> tuple[int, list[str]]:
    page.wait_for_selector("[data-answers] .answer-card")
    ids = page.eval_on_selector_all("[data-answers] .answer-card", "cs => cs.map(c => c.dataset.id)")
    return Answer.objects.get(pk=int(ids[0])).item_id, ids


def test_the_ranking_page_serves_a_model_project_in_score_order(browser, live_server):
    project = ProjectFactory(work_order="model", rankings_per_item=1)
    priorities = [0.3, 0.95, 0.1, 0.6]
    items = [
        ItemFactory(project=project, model_priority=p, answers=[f"Item {n} answer {x}" for x in "ab"])
        for n, p in enumerate(priorities)
    ]
    expected = [item.pk for item in sorted(items, key=lambda item: -item.model_priority)]
    user = UserFactory()
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(15_000)
    path = reverse("rank", args=[project.pk])
    page.goto(f"{live_server.url}{path}")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("form button[type=submit]")
    page.wait_for_url(f"{live_server.url}{path}")

    served = []
    for _ in items:
        item_id, ids = _shown_item(page)
        served.append(item_id)
        page.keyboard.press("ArrowDown")  # the focused first answer moves down: a ranking made by a person
        page.keyboard.press("Enter")
        if len(served) < len(items):
            page.wait_for_function(NEW_ITEM_SHOWN, arg=ids)
    assert served == expected
