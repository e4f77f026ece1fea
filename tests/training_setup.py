"""Shared by the training tests: a tiny BERT-like base model and items whose ranking a model can learn."""

import random
from pathlib import Path

from annotation.models import Item, Project
from tests.factories import ItemFactory, RankingFactory, UserFactory

GOOD = ["helpful", "clear", "correct", "honest"]
BAD = ["rude", "wrong", "vague", "false"]
FILLER = ["the", "a", "of", "to", "and", "in", "is", "it", "that", "for", "on", "with", "as", "was"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# Fast-learning settings for the tiny model (a few seconds of CPU).
TINY_ARGUMENTS = {"epochs": 3, "lr": 3e-3, "max_length": 64, "batch_tokens": 300, "eval_fraction": 0.25}


def tiny_base_model_save(directory: Path) -> Path:
    """Save a randomly initialised one-layer BERT and a word-level tokenizer for our words to `directory`."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    vocab = SPECIAL + ["?", ":", "user", "assistant", "system", *sorted(set(GOOD + BAD + FILLER))]
    tokenizer = BertTokenizerFast(vocab={word: i for i, word in enumerate(vocab)}, do_lower_case=True)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=1,
    )
    BertForSequenceClassification(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def answer_text(rng: random.Random, markers: list[str]) -> str:
    """Filler words with three marker words mixed in: the markers decide how good the answer is."""
    words = [rng.choice(FILLER) for _ in range(6)] + [rng.choice(markers) for _ in range(3)]
    rng.shuffle(words)
    return " ".join(words)


def learnable_items_create(*, project: Project, count: int, seed: int = 0) -> list[Item]:
    """Items with a good, a neutral and a bad answer, in shuffled positions."""
    rng = random.Random(seed)
    items = []
    for n in range(count):
        texts = [answer_text(rng, GOOD), answer_text(rng, FILLER), answer_text(rng, BAD)]
        rng.shuffle(texts)
        prompt = " ".join(rng.choice(FILLER) for _ in range(5)) + f" {n}?"
        items.append(
            ItemFactory(project=project, conversation=[{"role": "user", "content": prompt}], answers=texts)
        )
    return items


def quality(text: str) -> int:
    """How good the data says an answer is: good words minus bad words."""
    words = text.split()
    return sum(w in GOOD for w in words) - sum(w in BAD for w in words)


def best_first_order(item: Item) -> list[list[int]]:
    """The ranking the data teaches: the answer with good words first, the one with bad words last."""
    answers = sorted(item.answers.all(), key=lambda answer: -quality(answer.text))
    return [[answer.pk] for answer in answers]


def rankings_submit_through_api(client, project: Project) -> int:
    """Rank every item offered to the client's user through the work API, the way the data teaches."""
    submitted = 0
    while True:
        response = client.post(f"/api/projects/{project.pk}/next/")
        assert response.status_code == 200, response.content
        assignment = response.json()["assignment"]
        if assignment is None:
            return submitted
        answers = sorted(assignment["answers"], key=lambda answer: -quality(answer["text"]))
        order = [[answer["id"]] for answer in answers]
        submit = client.post(f"/api/assignments/{assignment['id']}/submit/", {"order": order}, format="json")
        assert submit.status_code == 201, submit.content
        submitted += 1


def learnable_rankings_create(*, project: Project, count: int, seed: int = 0) -> list[Item]:
    """Items ranked the way `best_first_order` says, by one annotator, through the ORM."""
    annotator = UserFactory()
    items = learnable_items_create(project=project, count=count, seed=seed)
    for item in items:
        RankingFactory(item=item, annotator=annotator, order=best_first_order(item))
    return items
