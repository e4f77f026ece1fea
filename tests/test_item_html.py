"""Each item's Markdown is rendered by the first lease, stored on the item, and read by later leases."""

import time

import pytest
from rest_framework.test import APIClient

from annotation.item_html import FORMAT
from annotation.models import Answer, Item
from tests.factories import ItemFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


def _client():
    client = APIClient()
    client.force_authenticate(UserFactory())
    return client


def _next(client, project) -> dict:
    response = client.post(f"/api/projects/{project.pk}/next/", format="json")
    assert response.status_code == 200, response.content
    return response.json()["assignment"]


def _html_by_answer(assignment: dict) -> dict[int, str]:
    return {answer["id"]: answer["html"] for answer in assignment["answers"]}


@pytest.fixture
def item():
    project = ProjectFactory(rankings_per_item=3)
    return ItemFactory(
        project=project,
        conversation=[{"role": "user", "content": "Is **this** safe?"}],
        answers=["*yes*", "no <script>alert(1)</script>", "`maybe`"],
    )


def _stored_html(item) -> tuple[list[str], dict[int, str]]:
    stored = Item.objects.get(pk=item.pk).rendered
    assert stored["format"] == FORMAT
    turns = [html for _, html in stored["conversation"]]
    return turns, {int(answer_id): html for answer_id, (_, html) in stored["answers"].items()}


def test_the_first_lease_stores_the_html_it_served(item):
    assert item.rendered is None
    served = _next(_client(), item.project)
    turns, answers = _stored_html(item)
    assert turns == [turn["html"] for turn in served["conversation"]]
    assert answers == _html_by_answer(served)
    item.refresh_from_db()
    assert item.open_lease_count == 1, "the counter update that stores the HTML still counts the lease"
    assert "&lt;script&gt;" in answers[item.answers.get(position=1).pk]


def test_later_leases_read_the_stored_html_instead_of_rendering_again(item):
    _next(_client(), item.project)
    # Mark the stored copy: if the second annotator's payload shows the marks, it came from the row.
    stored = Item.objects.get(pk=item.pk).rendered
    marked = {
        **stored,
        "conversation": [[digest, "<p>stored turn</p>"] for digest, _ in stored["conversation"]],
        "answers": {
            answer_id: [digest, f"<p>stored {answer_id}</p>"]
            for answer_id, (digest, _) in stored["answers"].items()
        },
    }
    Item.objects.filter(pk=item.pk).update(rendered=marked)
    served = _next(_client(), item.project)
    assert served["conversation"][0]["html"] == "<p>stored turn</p>"
    assert _html_by_answer(served) == {int(k): f"<p>stored {k}</p>" for k in stored["answers"]}


def test_text_edited_by_save_or_by_a_queryset_update_is_rendered_again(item):
    _next(_client(), item.project)
    answer = item.answers.get(position=0)
    answer.text = "**changed**"
    answer.save()
    Item.objects.filter(pk=item.pk).update(conversation=[{"role": "user", "content": "_new_ question"}])

    served = _next(_client(), item.project)

    assert _html_by_answer(served)[answer.pk] == "<p><strong>changed</strong></p>"
    assert served["conversation"][0]["html"] == "<p><em>new</em> question</p>"
    turns, answers = _stored_html(item)
    assert turns == ["<p><em>new</em> question</p>"]
    assert answers[answer.pk] == "<p><strong>changed</strong></p>"
    untouched = item.answers.get(position=2)
    assert answers[untouched.pk] == "<p><code>maybe</code></p>"


def test_a_deleted_answers_html_is_dropped_from_the_stored_copy(item):
    _next(_client(), item.project)
    gone = item.answers.get(position=2)
    gone.delete()

    _next(_client(), item.project)

    assert gone.pk not in _stored_html(item)[1]


def test_an_answer_added_later_and_html_of_an_older_format_are_rendered_on_the_spot(item):
    _next(_client(), item.project)
    Answer.objects.bulk_create(  # bulk_create skips save(), like an import adding to an existing item
        [Answer(item=item, project=item.project, position=3, text="a _late_ answer")]
    )
    served = _next(_client(), item.project)
    late = item.answers.get(position=3)
    assert _html_by_answer(served)[late.pk] == "<p>a <em>late</em> answer</p>"
    assert late.pk in _stored_html(item)[1]

    stored = Item.objects.get(pk=item.pk).rendered
    old = {**stored, "format": FORMAT - 1, "conversation": [[stored["conversation"][0][0], "<p>old</p>"]]}
    Item.objects.filter(pk=item.pk).update(rendered=old)
    served = _next(_client(), item.project)
    assert served["conversation"][0]["html"] == "<p>Is <strong>this</strong> safe?</p>"
    assert Item.objects.get(pk=item.pk).rendered["format"] == FORMAT


def test_a_huge_emphasis_heavy_answer_is_served_as_written_with_a_note():
    # 400 kB of emphasis: Python-Markdown took 36 s over it, inside the lease's transaction (issue #12).
    huge = "*b* " * 100_000 + "\n<script>alert(1)</script>"
    item = ItemFactory(
        project=ProjectFactory(),
        conversation=[{"role": "user", "content": "Which?"}],
        answers=[huge, "*short*"],
    )
    started = time.thread_time()

    served = _next(_client(), item.project)

    assert time.thread_time() - started < 3
    html = _html_by_answer(served)
    huge_html = html[item.answers.get(position=0).pk]
    assert huge_html.startswith(
        '<p class="format-note"><em>This text is too long to format (400,026 characters;'
    )
    assert "<em>b</em>" not in huge_html
    assert huge_html.endswith("*b* \n&lt;script&gt;alert(1)&lt;/script&gt;</pre>")
    assert html[item.answers.get(position=1).pk] == "<p><em>short</em></p>"
    assert _stored_html(item)[1] == html, "the plain-text fallback is stored like any other HTML"


def test_once_an_items_texts_used_its_cpu_budget_the_rest_are_shown_as_written(settings):
    settings.MARKDOWN_MAX_CPU_MS = 50
    settings.MARKDOWN_ITEM_MAX_CPU_MS = 100
    # Each unclosed `[` scans the rest of the text: each of these takes seconds to convert, unbounded.
    slow = ["[" * 20_000 + f" answer {number}" for number in range(3)]
    item = ItemFactory(project=ProjectFactory(), answers=[*slow, "**fast**"])
    started = time.thread_time()

    served = _next(_client(), item.project)

    assert time.thread_time() - started < 1
    html = _html_by_answer(served)
    by_position = [html[item.answers.get(position=position).pk] for position in range(4)]
    assert all(
        text.startswith('<p class="format-note"><em>This text took too long') for text in by_position[:2]
    )
    # Two stopped at 50 ms each: the item's 100 ms are spent, and its other texts are not even tried.
    assert by_position[2].startswith('<p class="format-note"><em>This item took too long to format')
    assert by_position[2].endswith("[[[ answer 2</pre>")
    assert by_position[3].startswith('<p class="format-note"><em>This item took too long to format')
