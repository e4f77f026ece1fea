"""An item's turns and answers as sanitised HTML, rendered once and kept on the item's row.

Every item is shown to `rankings_per_item` annotators and converting Markdown costs more CPU than the
rest of handing out the item, so the lease that first shows an item stores the HTML with its counter
update (annotation.assignment) and later ones read it. Saving an item or an answer clears the stored
copy (see the models); an answer added later, or a change of `render_markdown` (bump FORMAT), is
rendered on the spot.
"""

from collections.abc import Iterable

from .markdown import render_markdown
from .models import Answer, Item

# Bump when render_markdown's output changes, so HTML stored by the old code is rendered again.
FORMAT = 1


def item_rendering(item: Item, answers: Iterable[Answer]) -> dict:
    """The stored HTML, completed: {"format", "conversation": [html per turn], "answers": {"<id>": html}}."""
    stored = item.rendered if isinstance(item.rendered, dict) else {}
    if stored.get("format") != FORMAT:
        stored = {}
    turns = stored.get("conversation")
    if not isinstance(turns, list) or len(turns) != len(item.conversation):
        turns = [render_markdown(turn.get("content", "")) for turn in item.conversation]
    answer_html = dict(stored.get("answers", {}))
    for answer in answers:
        if str(answer.pk) not in answer_html:
            answer_html[str(answer.pk)] = render_markdown(answer.text)
    return {"format": FORMAT, "conversation": turns, "answers": answer_html}
