"""The ranking page in a real Chromium against the live test server on PostgreSQL."""

from datetime import timedelta
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone

from annotation.models import Assignment, Ranking
from tests.factories import ItemFactory, ProjectFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery staple"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
HOSTILE_ANSWER = 'Hi <script>window.pwned=1</script> and <img src=x onerror="window.pwned=1"> there'

NEW_ITEM_SHOWN = """(previous) => {
  const ids = [...document.querySelectorAll('[data-answers] .answer-card')].map((card) => card.dataset.id);
  return ids.length > 0 && !ids.some((id) => previous.includes(id));
}"""


def _open_page(browser, width=1280, height=900):
    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(15_000)
    return page


def _log_in(page, live_server, user, next_path):
    page.goto(f"{live_server.url}{next_path}")
    # Not signed in: the page sends us to the login form, which brings us back.
    assert reverse("login") in page.url
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("form button[type=submit]")
    page.wait_for_url(f"{live_server.url}{next_path}")


def _answer_ids(page) -> list[int]:
    page.wait_for_selector("[data-answers] .answer-card")
    return [
        int(i)
        for i in page.eval_on_selector_all("[data-answers] .answer-card", "cs => cs.map(c => c.dataset.id)")
    ]


def _card(page, answer_id):
    return page.locator(f'[data-answers] .answer-card[data-id="{answer_id}"]')


def _wait_for_next_item(page, previous_ids):
    page.wait_for_function(NEW_ITEM_SHOWN, arg=[str(answer_id) for answer_id in previous_ids])


def _drag(page, source, target):
    """Drag `source` by its header and drop it on the top half of `target`, as a person's mouse would."""
    start = source.locator(".answer-head").bounding_box()
    end = target.locator(".answer-head").bounding_box()
    page.mouse.move(start["x"] + 40, start["y"] + start["height"] / 2)
    page.mouse.down()
    page.mouse.move(end["x"] + 40, end["y"] + 2, steps=20)
    page.mouse.move(end["x"] + 40, end["y"] + 1, steps=5)
    page.mouse.up()


def _ranking_of(user, answer_ids) -> Ranking:
    return Ranking.objects.get(annotator=user, item__answers__id=answer_ids[0])


def test_annotator_ranks_by_drag_keyboard_tie_skips_flags_and_marks_not_rankable(browser, live_server):
    project = ProjectFactory(rankings_per_item=1, allow_ties=True, flag_labels=["spam", "harmful"])
    items = [
        ItemFactory(
            project=project,
            conversation=[
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": f"Question {number}: how do I add to a **list**?"},
                {"role": "assistant", "content": "One element or several?"},
                {"role": "user", "content": "Just one."},
            ],
            answers=[f"Item {number}, answer {letter}: use `append`." for letter in "xyz"],
        )
        for number in range(5)
    ]
    user = UserFactory()
    page = _open_page(browser)
    _log_in(page, live_server, user, reverse("rank", args=[project.pk]))

    # The guidelines are one click away, rendered from Markdown.
    page.click("[data-action=guidelines]")
    guidelines = page.locator("[data-guidelines]")
    assert guidelines.locator("strong", has_text="helpful").is_visible()
    page.keyboard.press("Escape")
    guidelines.wait_for(state="hidden")

    # 1. By dragging: the last card goes to the top.
    first, second, third = _answer_ids(page)
    assert page.locator("[data-turns] .turn").count() == 4
    assert page.locator("[data-turns] .turn-system .turn-role").text_content() == "System"
    assert page.locator("[data-turns] .turn-user strong").first.inner_text() == "list"
    _drag(page, _card(page, third), _card(page, first))
    assert _answer_ids(page) == [third, first, second]
    page.click("[data-action=submit]")
    _wait_for_next_item(page, [first, second, third])
    dragged = _ranking_of(user, [first])
    assert dragged.order == [[third], [first], [second]]
    assert dragged.not_rankable is False
    assert dragged.seconds_spent is not None and dragged.seconds_spent >= 0

    # 2. By keyboard only: the first card has focus when the item appears.
    first, second, third = _answer_ids(page)
    page.keyboard.press("ArrowDown")  # the focused first answer moves down one place
    page.keyboard.press("3")  # ...and then to the last place
    page.keyboard.press("k")  # focus the card above it (now `third`)
    page.keyboard.press("1")  # ...and make it the best
    assert _answer_ids(page) == [third, second, first]
    page.keyboard.press("Enter")
    _wait_for_next_item(page, [first, second, third])
    assert _ranking_of(user, [first]).order == [[third], [second], [first]]

    # 3. With a tie (by keyboard) and a flag (by mouse).
    first, second, third = _answer_ids(page)
    page.keyboard.press("j")  # focus the second card
    page.keyboard.press("t")  # tie it with the first
    assert _card(page, second).locator("[data-tie-chip]").is_visible()
    assert _card(page, second).locator("[data-rank]").inner_text() == "1"
    assert _card(page, third).locator("[data-rank]").inner_text() == "2"
    page.keyboard.press("t")  # untie...
    assert _card(page, second).locator("[data-rank]").inner_text() == "2"
    assert not _card(page, second).locator("[data-tie-chip]").is_visible()
    page.keyboard.press("t")  # ...and tie again
    assert _card(page, second).locator("[data-rank]").inner_text() == "1"
    _card(page, third).get_by_label("spam").check()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "rank-page.png"))
    page.click("[data-action=submit]")
    _wait_for_next_item(page, [first, second, third])
    tied = _ranking_of(user, [first])
    assert tied.order == [[first, second], [third]]
    assert tied.flags == {str(third): ["spam"]}

    # 4. Skipped with the key.
    skipped_ids = _answer_ids(page)
    page.keyboard.press("s")
    _wait_for_next_item(page, skipped_ids)
    skipped = Assignment.objects.get(annotator=user, item__answers__id=skipped_ids[0])
    assert skipped.status == Assignment.Status.SKIPPED
    assert not Ranking.objects.filter(annotator=user, item=skipped.item).exists()

    # 5. None of the answers is acceptable, with a comment.
    last_ids = _answer_ids(page)
    page.get_by_label("None of these answers is acceptable").check()
    page.click("[data-comment-box] summary")
    page.fill("[data-comment]", "All three ignore the question.")
    page.click("[data-action=submit]")
    page.wait_for_selector("[data-done]:not([hidden])")
    rejected = _ranking_of(user, last_ids)
    assert rejected.not_rankable is True
    assert rejected.order == []
    assert rejected.comment == "All three ignore the question."

    # Every item was handed out once; the page says there is nothing left and shows the progress.
    assert (
        page.locator("[data-done-message]").inner_text()
        == "No more items to rank in this project. Thank you!"
    )
    assert page.locator('[data-progress="mine_today"]').inner_text() == "4"
    assert page.locator('[data-progress="mine_total"]').inner_text() == "4"
    assert Ranking.objects.filter(annotator=user).count() == 4
    assert {assignment.item_id for assignment in Assignment.objects.filter(annotator=user)} == {
        item.pk for item in items
    }


def test_hostile_answer_renders_as_inert_text(browser, live_server):
    project = ProjectFactory()
    ItemFactory(
        project=project,
        conversation=[{"role": "user", "content": HOSTILE_ANSWER}],
        answers=[HOSTILE_ANSWER, "A **plain** answer.", "A long answer.\n\n" + "More detail.\n\n" * 60],
    )
    user = UserFactory()
    page = _open_page(browser, width=390, height=844)
    _log_in(page, live_server, user, reverse("rank", args=[project.pk]))
    _answer_ids(page)

    assert page.evaluate("typeof window.pwned") == "undefined"
    assert page.locator("[data-answers] img, [data-turns] img, [data-answers] script").count() == 0
    hostile_card = page.locator("[data-answers] .answer-card", has_text="window.pwned")
    assert "<script>window.pwned=1</script>" in hostile_card.inner_text()
    assert '<img src=x onerror="window.pwned=1">' in hostile_card.inner_text()
    assert "<script>window.pwned=1</script>" in page.locator("[data-turns]").inner_text()
    assert page.locator("[data-answers] strong", has_text="plain").count() == 1
    # A long answer starts collapsed behind "Show all"; short ones have no such button.
    long_card = page.locator("[data-answers] .answer-card", has_text="A long answer.")
    assert long_card.locator("[data-body]").evaluate("body => body.classList.contains('is-collapsed')")
    assert page.get_by_role("button", name="Show all").count() == 1
    long_card.get_by_role("button", name="Show all").click()
    assert long_card.get_by_role("button", name="Show less").is_visible()
    assert long_card.locator("[data-body]").evaluate("body => !body.classList.contains('is-collapsed')")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "rank-page-phone.png"), full_page=True)


def test_an_answer_too_long_to_format_shows_as_written_under_a_note(browser, live_server):
    project = ProjectFactory()
    # 400 kB of emphasis: converting it took 36 s, holding the item's row lock (issue #12).
    huge = "*b* " * 100_000 + "\nlast line <b>not bold</b>"
    ItemFactory(project=project, answers=[huge, "A **plain** answer."])
    user = UserFactory()
    page = _open_page(browser)
    _log_in(page, live_server, user, reverse("rank", args=[project.pk]))
    _answer_ids(page)

    card = page.locator("[data-answers] .answer-card", has=page.locator(".format-note"))
    assert card.locator(".format-note").inner_text() == (
        "This text is too long to format (400,026 characters; the limit is 50,000), "
        "so it is shown as written."
    )
    as_written = card.locator("pre.plain-text")
    assert as_written.inner_text().startswith("*b* *b* *b*")
    assert as_written.inner_text().endswith("*b* \nlast line <b>not bold</b>")
    assert as_written.evaluate("pre => getComputedStyle(pre).whiteSpace") == "pre-wrap"
    assert page.locator("[data-answers] strong", has_text="plain").count() == 1
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "rank-page-too-long.png"))


def test_an_expired_lease_shows_the_servers_message_and_the_page_goes_on(browser, live_server):
    project = ProjectFactory(rankings_per_item=1)
    ItemFactory(project=project, answers=["first", "second"])
    user = UserFactory()
    page = _open_page(browser)
    _log_in(page, live_server, user, reverse("rank", args=[project.pk]))
    answer_ids = _answer_ids(page)
    Assignment.objects.filter(annotator=user).update(expires_at=timezone.now() - timedelta(seconds=1))

    page.keyboard.press("ArrowDown")  # a changed order, so that the page sends it without asking
    page.keyboard.press("Enter")

    alert = page.locator("[data-alert]")
    alert.wait_for(state="visible")
    assert "ran out" in alert.inner_text()
    assert not Ranking.objects.filter(annotator=user).exists()
    # The item went back to the pool and, being the only one, comes back to this annotator.
    alert.get_by_role("button", name="Load the next item").click()
    alert.wait_for(state="hidden")
    assert sorted(_answer_ids(page)) == sorted(answer_ids)
    shown = _answer_ids(page)
    page.click("[data-action=submit]")
    page.wait_for_selector("[data-done]:not([hidden])")
    assert Ranking.objects.get(annotator=user).order == [[answer_id] for answer_id in shown]


def test_tab_goes_from_answer_to_answer_past_the_flags_and_f_reaches_them(browser, live_server):
    labels = ["spam", "harmful", "off-topic", "false", "rude"]
    project = ProjectFactory(rankings_per_item=1, flag_labels=labels)
    ItemFactory(project=project, answers=["Answer x.", "Answer y.", "Answer z."])
    user = UserFactory()
    page = _open_page(browser)
    _log_in(page, live_server, user, reverse("rank", args=[project.pk]))
    first, second, third = _answer_ids(page)
    focused = "() => document.activeElement.closest('.answer-card')?.dataset.id"

    page.keyboard.press("Tab")
    assert page.evaluate(focused) == str(second)
    assert page.evaluate("() => document.activeElement.classList.contains('answer-card')")
    page.keyboard.press("Tab")
    assert page.evaluate(focused) == str(third)

    # F: into the focused answer's flags; → to the next label, Space ticks it, Esc back to the card.
    page.keyboard.press("f")
    page.keyboard.press("ArrowRight")
    assert page.evaluate("() => document.activeElement.value") == "harmful"
    page.keyboard.press(" ")
    page.keyboard.press("Escape")
    assert page.evaluate("() => document.activeElement.classList.contains('answer-card')")
    page.keyboard.press("1")  # the focused third answer becomes the best
    page.keyboard.press("Enter")
    page.wait_for_selector("[data-done]:not([hidden])")

    ranking = _ranking_of(user, [first])
    assert ranking.order == [[third], [first], [second]]
    assert ranking.flags == {str(third): ["harmful"]}


LONG_TURN = " ".join(f"word{n}" for n in range(3000))
LATEST_QUESTION = "So which of these should I pick for a beginner?"


def _long_conversation_item(project):
    return ItemFactory(
        project=project,
        conversation=[
            {"role": "user", "content": "Compare the main Python web frameworks for me."},
            {"role": "assistant", "content": LONG_TURN},
            {"role": "user", "content": LATEST_QUESTION},
        ],
        answers=["Flask.", "Django.", "FastAPI."],
    )


@pytest.mark.parametrize("width, height", [(1366, 900), (390, 844)])
def test_the_latest_user_turn_is_on_the_first_screen_under_a_3000_word_earlier_turn(
    browser, live_server, width, height
):
    project = ProjectFactory(rankings_per_item=1)
    _long_conversation_item(project)
    user = UserFactory()
    page = _open_page(browser, width=width, height=height)
    _log_in(page, live_server, user, reverse("rank", args=[project.pk]))
    _answer_ids(page)

    latest = page.locator("[data-turns] .turn-latest")
    box = latest.bounding_box()
    assert LATEST_QUESTION in latest.inner_text()
    assert box["y"] >= 0 and box["y"] + box["height"] <= height  # whole, without scrolling anything
    assert page.evaluate("() => window.scrollY") == 0
    # The page does not spill sideways on a phone.
    assert page.evaluate("() => document.documentElement.scrollWidth") <= width
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"rank-long-conversation-{width}.png"))

    # Earlier turns are one line each until opened; the long one opens to its first screenful.
    earlier = page.locator("[data-turns] .turn-earlier")
    assert earlier.count() == 2
    long_turn = earlier.nth(1)
    assert long_turn.bounding_box()["height"] < 60
    long_turn.locator(".turn-toggle").click()
    assert long_turn.locator(".turn-body").is_visible()
    show_all = long_turn.locator("button.expand")
    assert show_all.inner_text() == "Show all"
    folded_height = long_turn.bounding_box()["height"]
    show_all.click()
    assert long_turn.bounding_box()["height"] > folded_height * 3
    assert "word2999" in long_turn.locator(".turn-body").inner_text()


def test_an_untouched_order_is_asked_about_once_and_unsent_moves_survive_a_reload(browser, live_server):
    project = ProjectFactory(rankings_per_item=1, flag_labels=["spam"])
    for _ in range(2):
        ItemFactory(project=project, answers=["Answer x.", "Answer y.", "Answer z."])
    user = UserFactory()
    page = _open_page(browser)
    _log_in(page, live_server, user, reverse("rank", args=[project.pk]))

    # Enter at once: the page asks instead of sending the shuffled order...
    shown = _answer_ids(page)
    page.keyboard.press("Enter")
    alert = page.locator("[data-alert]")
    alert.wait_for(state="visible")
    assert "not changed the order" in alert.inner_text()
    assert not Ranking.objects.filter(annotator=user).exists()
    # ...and a second Enter sends it, recorded as untouched.
    page.keyboard.press("Enter")
    _wait_for_next_item(page, shown)
    untouched = _ranking_of(user, shown)
    assert untouched.order == [[answer_id] for answer_id in shown] and untouched.order_changed is False

    # Moves, a flag and a comment on the next item survive a reload, and are what is sent.
    first, second, third = _answer_ids(page)
    page.keyboard.press("3")  # the focused first answer goes last
    _card(page, second).get_by_label("spam").check()
    page.click("[data-comment-box] summary")
    page.fill("[data-comment]", "Y repeats itself.")
    page.reload()
    assert _answer_ids(page) == [second, third, first]
    assert _card(page, second).get_by_label("spam").is_checked()
    assert page.input_value("[data-comment]") == "Y repeats itself."
    page.click("[data-action=submit]")
    page.wait_for_selector("[data-done]:not([hidden])")

    moved = _ranking_of(user, [first])
    assert moved.order == [[second], [third], [first]] and moved.order_changed is True
    assert moved.flags == {str(second): ["spam"]} and moved.comment == "Y repeats itself."
    drafts = "() => Object.keys(localStorage).filter((k) => k.startsWith('rewardlab-draft-'))"
    assert page.evaluate(drafts) == []


def test_undo_through_my_rankings_changes_the_sent_ranking(browser, live_server):
    project = ProjectFactory(rankings_per_item=1)
    ItemFactory(project=project, answers=["Answer x.", "Answer y.", "Answer z."])
    user = UserFactory()
    page = _open_page(browser)
    _log_in(page, live_server, user, reverse("rank", args=[project.pk]))
    first, second, third = _answer_ids(page)
    page.keyboard.press("3")  # first goes last
    page.keyboard.press("Enter")
    page.wait_for_selector("[data-done]:not([hidden])")
    sent = _ranking_of(user, [first])
    assert sent.order == [[second], [third], [first]]

    page.goto(f"{live_server.url}{reverse('rank', args=[project.pk])}")
    page.click("text=My rankings")
    page.click(f'tr[data-ranking="{sent.pk}"] >> text=Change')
    # The page shows the ranking as it was sent; moving the last answer to the top and sending it changes it.
    assert _answer_ids(page) == [second, third, first]
    _card(page, first).focus()
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    page.wait_for_url("**/mine/?changed=1")

    sent.refresh_from_db()
    assert sent.order == [[first], [second], [third]]
    assert sent.revisions.get().order == [[second], [third], [first]]
    assert "1×" in page.locator(f'tr[data-ranking="{sent.pk}"]').inner_text()
