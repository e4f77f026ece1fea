"""Shared by the evaluation tests: a RewardBench-shaped suite of the words `training_setup` teaches."""

import json
import random
from pathlib import Path

from tests.training_setup import BAD, FILLER, GOOD, answer_text


def suite_rows(*, count: int = 12, seed: int = 7, reverse: str = "") -> list[dict]:
    """Pairs with a `subset`, "good-vs-bad" or "good-vs-neutral"; the subset named `reverse` (or "all")
    turned round."""
    rng = random.Random(seed)
    rows = []
    for n in range(count):
        subset = "good-vs-bad" if n % 2 == 0 else "good-vs-neutral"
        chosen = answer_text(rng, GOOD)
        rejected = answer_text(rng, BAD if subset == "good-vs-bad" else FILLER)
        if reverse in (subset, "all"):
            chosen, rejected = rejected, chosen
        prompt = " ".join(rng.choice(FILLER) for _ in range(4)) + f" suite {n}?"
        rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected, "subset": subset})
    return rows


def suite_file_write(path: Path, rows: list[dict]) -> Path:
    """The rows as a .jsonl file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def export_rows(items, annotators: tuple[str, ...] = ("annotator-a", "annotator-b")) -> list[dict]:
    """Our `rankings` export's rows for `items`, each ranked the way the data teaches by every annotator."""
    from tests.training_setup import best_first_order

    rows = []
    for item in items:
        answers = [{"id": a.pk, "text": a.text} for a in item.answers.order_by("position")]
        for annotator in annotators:
            rows.append(
                {
                    "item_id": item.pk,
                    "conversation": item.conversation,
                    "answers": answers,
                    "ranking": best_first_order(item),
                    "annotator": annotator,
                }
            )
    return rows


def version_with_figures(*, project, version: int, items, reward, directory: Path, is_active: bool = False):
    """A version whose figures and pair margins are the engine's for the rewards `reward(text)` gives."""
    from training.models import RewardModel
    from training.reward_model import evaluation_figures, groups_from_records
    from training.reward_model.evaluation import pair_margins_write

    groups = groups_from_records(export_rows(items), slices=True)
    scores = [[float(reward(answer["text"])) for answer in group.answers] for group in groups]
    figures = evaluation_figures(groups, scores)
    pair_margins_write(directory / "evaluation" / "held_out.jsonl", groups, scores)
    return RewardModel.objects.create(
        project=project,
        version=version,
        artifact_path=str(directory),
        is_active=is_active,
        pairwise_accuracy=figures["pairwise_accuracy"],
        eval_pairs=figures["pairs"],
        metrics={"eval": {"pairwise_accuracy": figures["pairwise_accuracy"]}, "evaluation": figures},
    )
