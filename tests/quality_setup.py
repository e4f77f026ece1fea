"""A project's worked example for the per-annotator figures: one careful annotator and one careless one."""

from annotation import gold
from annotation.models import Project
from tests.factories import ItemFactory, RankingFactory, UserFactory


def careful_and_careless(*, project: Project, gold_items: int = 3, shared_items: int = 3) -> tuple:
    """Gold items of three answers that careful ranks as gold says (30 s each) and careless reversed,
    untouched, in 1 s; then shared items that careful (40 s) and two others (other1, other2, 35 s) rank
    in the answers' order and careless reversed, untouched, in 2 s. Returns (careful, careless, others).
    """
    careful, careless = UserFactory(username="careful"), UserFactory(username="careless")
    others = [UserFactory(username="other1"), UserFactory(username="other2")] if shared_items else []

    def rank(item, person, answers, seconds, changed=True):
        RankingFactory(
            item=item,
            annotator=person,
            order=[[a] for a in answers],
            seconds_spent=seconds,
            order_changed=changed,
        )

    for number in range(gold_items + shared_items):
        item = ItemFactory(project=project, answers=["a", "b", "c"])
        answers = list(item.answers.order_by("position").values_list("pk", flat=True))
        if number < gold_items:
            gold.gold_item_set(item=item, order=[[a] for a in answers])
            rank(item, careful, answers, 30)
            rank(item, careless, answers[::-1], 1, changed=False)
        else:
            rank(item, careful, answers, 40)
            for other in others:
                rank(item, other, answers, 35)
            rank(item, careless, answers[::-1], 2, changed=False)
    return careful, careless, others
