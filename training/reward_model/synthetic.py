"""Synthetic, learnable preference data for tests and benchmarks (no download, fully seeded).

An answer's quality is the number of "good" marker words minus "bad" ones hidden among filler; a ranking
orders answers by it. Lengths vary so that length grouping and truncation are exercised.
"""

from __future__ import annotations

import random
from typing import Any

GOOD = ("correct", "helpful", "clear", "precise", "honest")
BAD = ("wrong", "rude", "vague", "broken", "false")
FILLER = [
    "the",
    "a",
    "of",
    "to",
    "and",
    "in",
    "is",
    "it",
    "that",
    "for",
    "on",
    "with",
    "as",
    "was",
    "at",
    "by",
    "this",
    "from",
    "or",
    "an",
    "be",
    "are",
    "have",
    "not",
    "but",
    "they",
    "which",
    "one",
    "you",
    "all",
    "were",
    "her",
    "she",
    "there",
    "would",
    "their",
    "we",
    "him",
    "been",
    "has",
    "when",
    "who",
    "will",
    "more",
    "no",
    "if",
    "out",
    "so",
    "up",
    "said",
    "what",
    "its",
    "about",
    "into",
    "than",
    "them",
    "can",
    "only",
    "other",
    "new",
    "some",
    "could",
    "time",
    "these",
    "two",
    "may",
    "then",
    "do",
    "first",
    "any",
    "my",
    "now",
    "such",
    "like",
    "our",
    "over",
    "man",
    "me",
    "even",
    "most",
    "made",
    "after",
    "also",
    "did",
    "many",
    "before",
    "must",
    "through",
    "back",
    "years",
    "where",
    "much",
    "your",
    "way",
    "well",
    "down",
    "should",
    "because",
    "each",
    "just",
    "those",
    "people",
    "how",
    "too",
    "little",
    "state",
    "good",
    "very",
    "make",
    "world",
    "still",
    "own",
    "see",
    "men",
    "work",
    "long",
    "get",
    "here",
    "between",
    "both",
    "life",
    "being",
    "under",
    "never",
    "day",
    "same",
    "another",
    "know",
    "while",
    "last",
    "might",
    "us",
    "great",
    "old",
    "year",
    "off",
    "come",
    "since",
    "against",
    "go",
    "came",
    "right",
    "used",
    "take",
    "three",
]


def synthetic_records(
    n_items: int, k: int = 4, seed: int = 0, min_words: int = 8, max_words: int = 48
) -> list:
    """Rows of the plain ranking shape: {"id", "prompt", "answers", "ranking"} with a strict ranking."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    for n in range(n_items):
        prompt = " ".join(rng.choice(FILLER) for _ in range(rng.randint(4, 24))) + "?"
        qualities = rng.sample(range(k + 2), k)  # distinct, so the ranking is strict
        answers = []
        for q in qualities:
            words = [rng.choice(FILLER) for _ in range(rng.randint(min_words, max_words))]
            markers = [rng.choice(GOOD) for _ in range(q)] + [rng.choice(BAD) for _ in range(k + 1 - q)]
            for m in markers:
                words.insert(rng.randrange(len(words) + 1), m)
            answers.append(" ".join(words))
        ranking = sorted(range(k), key=lambda i: -qualities[i])
        rows.append({"id": f"item-{seed}-{n}", "prompt": prompt, "answers": answers, "ranking": ranking})
    return rows


def pair_records(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same preferences as TRL explicit-prompt pair rows: every ordered pair of every ranking."""
    out = []
    for row in rows:
        order = row["ranking"]
        for a in range(len(order)):
            for b in range(a + 1, len(order)):
                out.append(
                    {
                        "item_id": row["id"],
                        "prompt": row["prompt"],
                        "chosen": row["answers"][order[a]],
                        "rejected": row["answers"][order[b]],
                        "rank_gap": b - a,
                    }
                )
    return out


def long_prompt_records(
    n_items: int,
    k: int = 4,
    seed: int = 0,
    turns: int = 3,
    prompt_words: tuple[int, int] = (160, 240),
    answer_words: tuple[int, int] = (24, 48),
) -> list[dict[str, Any]]:
    """Ranking rows with long multi-turn conversations and short answers, as decoder reward models read them.

    The conversation (`turns` user turns with assistant replies between them) holds `prompt_words` words in
    all, several times an answer's; an answer's quality is its good minus bad markers, as in
    `synthetic_records`.
    """
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    for n in range(n_items):
        total = rng.randint(*prompt_words)
        cuts = sorted(rng.sample(range(1, total), 2 * turns - 2))
        lengths = [b - a for a, b in zip([0, *cuts], [*cuts, total], strict=True)]
        conversation = [
            {"role": "user" if i % 2 == 0 else "assistant", "content": _filler(rng, m)}
            for i, m in enumerate(lengths)
        ]
        conversation[-1]["content"] += " ?"
        qualities = rng.sample(range(k + 2), k)
        answers = []
        for q in qualities:
            words = _filler(rng, rng.randint(*answer_words) - (k + 1)).split()
            markers = [rng.choice(GOOD) for _ in range(q)] + [rng.choice(BAD) for _ in range(k + 1 - q)]
            for m in markers:
                words.insert(rng.randrange(len(words) + 1), m)
            answers.append(" ".join(words))
        ranking = sorted(range(k), key=lambda i: -qualities[i])
        rows.append(
            {"id": f"long-{seed}-{n}", "conversation": conversation, "answers": answers, "ranking": ranking}
        )
    return rows


def _filler(rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choice(FILLER) for _ in range(max(n_words, 1)))


QWEN_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
)


def synthetic_tokenizer(vocab_size: int = 400) -> Any:
    """A byte-level BPE tokenizer (Qwen's kind) trained on the synthetic words, with Qwen's chat template.

    For decoders built from a config (tests, benchmarks): no download, and it saves and loads back as the
    same tokenizer. A small `vocab_size` splits words into several tokens, a large one keeps them whole.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [" ".join(FILLER), " ".join(GOOD + BAD), "user assistant system ? ."]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus * 3, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    tokenizer.chat_template = QWEN_CHAT_TEMPLATE
    return tokenizer
