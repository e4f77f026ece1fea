"""An item's turns and answers as sanitised HTML, rendered once and kept on the item's row.

Every item is shown to `rankings_per_item` annotators and converting Markdown costs more CPU than the
rest of handing out the item, so the lease that first shows an item stores the HTML and later ones read
it. Each stored piece keeps a digest of the text it was made from: text edited by any route (the admin,
an import, a queryset update) no longer matches and is rendered again, as is an answer added later or
everything after a change of `render_markdown` (bump FORMAT).

Rendering happens after the lease's transaction has committed, so no row lock is held while it runs
(annotation.assignment), and it is bounded: each text by `render_markdown`'s limits, the item's texts
together by `MARKDOWN_ITEM_MAX_CPU_MS`, past which the rest are shown as written.
"""

import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings

from .markdown import render_as_written, render_markdown
from .models import Answer, Item

# Bump when render_markdown's output changes, so HTML stored by the old code is rendered again.
FORMAT = 2


@dataclass(frozen=True)
class ItemHtml:
    """The HTML to show, and what to keep in Item.rendered for the next lease."""

    turns: list[str]
    answers: dict[int, str]
    stored: dict


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


class _Budget:
    """The CPU time an item's texts may still spend being converted, in seconds."""

    def __init__(self, seconds: float) -> None:
        self.left = seconds

    def render(self, text: str) -> str:
        if self.left <= 0 and text:
            return render_as_written(
                text, "This item took too long to format, so this text is shown as written."
            )
        started = time.thread_time()
        try:
            return render_markdown(text)
        finally:
            self.left -= time.thread_time() - started


def _html(kept: object, text: str, budget: _Budget) -> list[str]:
    """[digest, html] of the text: the kept pair when it was made from this text, else rendered now."""
    digest = _digest(text)
    if isinstance(kept, list) and len(kept) == 2 and kept[0] == digest:
        return kept
    return [digest, budget.render(text)]


def item_rendering(item: Item, answers: Iterable[Answer]) -> ItemHtml:
    """The item's turns and these answers as HTML, reusing what its row keeps where the text is unchanged."""
    stored = item.rendered if isinstance(item.rendered, dict) else {}
    if stored.get("format") != FORMAT:
        stored = {}
    kept_turns = stored.get("conversation")
    kept_turns = kept_turns if isinstance(kept_turns, list) else []
    kept_answers = stored.get("answers")
    kept_answers = kept_answers if isinstance(kept_answers, dict) else {}
    budget = _Budget(settings.MARKDOWN_ITEM_MAX_CPU_MS / 1000)
    turns = [
        _html(kept_turns[index] if index < len(kept_turns) else None, turn.get("content", ""), budget)
        for index, turn in enumerate(item.conversation)
    ]
    answer_html = {
        str(answer.pk): _html(kept_answers.get(str(answer.pk)), answer.text, budget) for answer in answers
    }
    return ItemHtml(
        turns=[html for _, html in turns],
        answers={int(answer_id): html for answer_id, (_, html) in answer_html.items()},
        stored={"format": FORMAT, "conversation": turns, "answers": answer_html},
    )


def item_html_store(*, item: Item) -> ItemHtml:
    """The item's HTML (its answers prefetched), rendering what its row lacks and keeping that on the row."""
    rendered = item_rendering(item, item.answers.all())
    if rendered.stored != item.rendered:
        # Called with no transaction open: the render above held no lock, and this UPDATE holds the row
        # only while it writes. Two leases of a new item may both render it; they write the same HTML,
        # and a text edited in between no longer matches its digest, so it is rendered again next time.
        Item.objects.filter(pk=item.pk).update(rendered=rendered.stored)
        item.rendered = rendered.stored
    return rendered
