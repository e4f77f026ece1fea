"""How much a person's ranking of an item would teach the reward model, and a diverse order to hand items out.

Pure Python and numpy (no Django, no torch), shared by the product's scoring pass
(`training.scoring_pass`) and the active-learning benchmark.

- Informativeness: the mean binary entropy (bits) of the Bradley–Terry probability
  P(a beats b) = sigmoid(r_a - r_b) over an item's answer pairs. 1 when the model cannot tell any two
  answers apart, near 0 when it is sure of every pair. A ranking of a K-answer item settles all its
  K(K-1)/2 pairs at once, so the mean over pairs is the per-item figure.
- Diversity: plain uncertainty sampling hands out near-duplicate prompts together (they are uncertain
  for the same reason). `diverse_order` walks the items by informativeness and discounts each by its
  highest cosine similarity to the items placed before it, on a hashed bag of the prompt's words.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Sequence
from itertools import combinations

import numpy as np

VECTOR_DIM = 512
_WORDS = re.compile(r"\w+")


def pair_entropy(rewards: Sequence[float]) -> float:
    """Mean Bradley–Terry entropy in bits over the answer pairs; 0 for fewer than two answers."""
    entropies = []
    for a, b in combinations(rewards, 2):
        p = 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, a - b))))
        entropies.append(0.0 if p in (0.0, 1.0) else -(p * math.log2(p) + (1 - p) * math.log2(1 - p)))
    return sum(entropies) / len(entropies) if entropies else 0.0


def prompt_vector(text: str, dim: int = VECTOR_DIM) -> np.ndarray:
    """A unit vector of the prompt's hashed words and word pairs (stable across processes)."""
    words = _WORDS.findall(text.lower())
    vector = np.zeros(dim, dtype=np.float32)
    for token in [*words, *(f"{a} {b}" for a, b in zip(words, words[1:], strict=False))]:
        vector[zlib.crc32(token.encode()) % dim] += 1.0
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm else vector


def diverse_order(
    scores: Sequence[float],
    vectors: np.ndarray | None = None,
    *,
    penalty: float = 0.5,
    top: int = 2000,
) -> list[int]:
    """Indices of `scores` in the order to hand them out: most informative first, near-duplicates held back.

    Greedy over the `top` most informative: each step takes the item whose score times
    (1 - penalty * its highest similarity to the items already taken) is largest. Past `top`, plain
    score order: those are handed out much later, after the next pass has scored them again.
    """
    by_score = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    if vectors is None or penalty <= 0 or len(by_score) < 2:
        return by_score
    head, tail = by_score[:top], by_score[top:]
    remaining = np.array(head)
    base = np.array([scores[i] for i in head], dtype=np.float32)
    pool_vectors = np.asarray(vectors, dtype=np.float32)[remaining]
    similarity = np.zeros(len(head), dtype=np.float32)
    taken = np.zeros(len(head), dtype=bool)
    order: list[int] = []
    for _ in range(len(head)):
        adjusted = np.where(taken, -np.inf, base * (1 - penalty * similarity))
        pick = int(np.argmax(adjusted))
        taken[pick] = True
        order.append(int(remaining[pick]))
        similarity = np.maximum(similarity, pool_vectors @ pool_vectors[pick])
    return order + tail


def priorities(order: Sequence[int], size: int) -> list[float]:
    """model_priority of each index from its place in `order`: evenly from 0.99 (first) down to 0.01."""
    out = [0.0] * size
    n = len(order)
    for place, index in enumerate(order):
        out[index] = 0.99 - 0.98 * (place / (n - 1)) if n > 1 else 0.99
    return out
