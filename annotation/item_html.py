"""An item's turns and answers as sanitised HTML, rendered once and kept on the item's row.

Every item is shown to `rankings_per_item` annotators and converting Markdown costs more CPU than the
rest of handing out the item, so the lease that first shows an item stores the HTML with its counter
update (annotation.assignment) and later ones read it. Each stored piece keeps a digest of the text it
was made from: text edited by any route (the admin, an import, a queryset update) no longer matches and
is rendered again, as is an answer added later or everything after a change of `render_markdown`
(bump FORMAT).
"""

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from .markdown import render_markdown
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


def _html(kept: object, text: str) -> list[str]:
    """[digest, html] of the text: the kept pair when it was made from this text, else rendered now."""
    digest = _digest(text)
    if isinstance(kept, list) and len(kept) == 2 and kept[0] == digest:
        return kept
    return [digest, render_markdown(text)]


def item_rendering(item: Item, answers: Iterable[Answer]) -> ItemHtml:
    """The item's turns and these answers as HTML, reusing what its row keeps where the text is unchanged."""
    stored = item.rendered if isinstance(item.rendered, dict) else {}
    if stored.get("format") != FORMAT:
        stored = {}
    kept_turns = stored.get("conversation")
    kept_turns = kept_turns if isinstance(kept_turns, list) else []
    kept_answers = stored.get("answers")
    kept_answers = kept_answers if isinstance(kept_answers, dict) else {}
    turns = [
        _html(kept_turns[index] if index < len(kept_turns) else None, turn.get("content", ""))
        for index, turn in enumerate(item.conversation)
    ]
    answer_html = {str(answer.pk): _html(kept_answers.get(str(answer.pk)), answer.text) for answer in answers}
    return ItemHtml(
        turns=[html for _, html in turns],
        answers={int(answer_id): html for answer_id, (_, html) in answer_html.items()},
        stored={"format": FORMAT, "conversation": turns, "answers": answer_html},
    )
