"""Held-out metrics computed from per-answer rewards: accuracy, and the diagnostics `evaluation` reports."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from preferences.consensus import ranked_pairs
from preferences.pairs import ranking_pairs
from preferences.rankings import rank_levels


def ranking_metrics(
    pairs_per_group: Sequence[Sequence[tuple[int, int]]],
    rankings: Sequence[Sequence[Sequence[int]] | None],
    scores: Sequence[Sequence[float]],
) -> dict[str, float | int | None]:
    """Strict pairwise accuracy, best-vs-worst accuracy and mean per-item Kendall tau.

    - pairwise_accuracy: share of preference pairs with reward(better) > reward(worse); equal rewards count
      as wrong, so a constant model scores 0, not 0.5.
    - best_vs_worst_accuracy: share of ranked items (2+ tie groups) where every best answer outscores every
      worst answer.
    - kendall_tau: per item, (concordant - discordant) / pairs over the item's preference pairs (tau-a on a
      strict ranking; tied answers form no pair), averaged over items.
    """
    correct = total = 0
    taus: list[float] = []
    bvw_correct = bvw_total = 0
    for pairs, ranking, s in zip(pairs_per_group, rankings, scores, strict=True):
        if not pairs:
            continue
        item_conc = item_disc = 0
        for b, w in pairs:
            if s[b] > s[w]:
                item_conc += 1
            elif s[b] < s[w]:
                item_disc += 1
        correct += item_conc
        total += len(pairs)
        taus.append((item_conc - item_disc) / len(pairs))
        if ranking and len(ranking) >= 2:
            bvw_total += 1
            bvw_correct += int(min(s[i] for i in ranking[0]) > max(s[i] for i in ranking[-1]))
    return {
        "pairwise_accuracy": correct / total if total else None,
        "pairs": total,
        "items": len(taus),
        "best_vs_worst_accuracy": bvw_correct / bvw_total if bvw_total else None,
        "ranked_items": bvw_total,
        "kendall_tau": sum(taus) / len(taus) if taus else None,
    }


# ---------------------------------------------------------------------------------------------------------
# Diagnostics beyond accuracy (`evaluation` feeds them the scored pairs of a file). Pure functions of given
# rewards, so each can be checked on numbers worked out by hand.

BOOTSTRAP_RESAMPLES = 1000
CALIBRATION_BINS = 10


def accuracy_interval(
    correct_per_item: Sequence[int],
    pairs_per_item: Sequence[int],
    *,
    confidence: float = 0.95,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> list[float] | None:
    """Percentile bootstrap interval of pairwise accuracy, resampling whole items rather than pairs.

    The pairs of one item share its answers (a ranking of 4 gives 6 pairs from 4 rewards), so they are not
    independent draws: an interval over pairs as if they were (Wilson's) is too narrow. Resampling items
    keeps each item's pairs together. None without pairs.
    """
    correct = np.asarray(correct_per_item, dtype=np.float64)
    totals = np.asarray(pairs_per_item, dtype=np.float64)
    if not len(totals) or totals.sum() == 0:
        return None
    rng = np.random.default_rng(seed)
    n = len(totals)
    rates = []
    # In chunks: resamples x items indices at once would be large for a big evaluation split.
    chunk = max(1, min(resamples, 2_000_000 // n))
    for start in range(0, resamples, chunk):
        picks = rng.integers(0, n, size=(min(chunk, resamples - start), n))
        pair_counts = totals[picks].sum(axis=1)
        rates.append(correct[picks].sum(axis=1) / np.maximum(pair_counts, 1))
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(np.concatenate(rates), [tail, 100 - tail])
    return [round(float(low), 6), round(float(high), 6)]


def _average_ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, tied values sharing the mean of their ranks (what Spearman's rho needs)."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for k in range(start, end + 1):
            ranks[order[k]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def spearman_correlation(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Spearman's rank correlation (Pearson's on average ranks); None for fewer than 3 points or no spread."""
    if len(xs) != len(ys):
        raise ValueError("xs and ys differ in length")
    if len(xs) < 3:
        return None
    rx, ry = _average_ranks(xs), _average_ranks(ys)
    mean = (len(xs) + 1) / 2
    sxy = sum((a - mean) * (b - mean) for a, b in zip(rx, ry, strict=True))
    sxx = sum((a - mean) ** 2 for a in rx)
    syy = sum((b - mean) ** 2 for b in ry)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)


def length_bias(
    answer_lengths: Sequence[int],
    answer_rewards: Sequence[float],
    pair_lengths: Sequence[tuple[int, int]],
    pair_margins: Sequence[float],
) -> dict[str, Any]:
    """How much the rewards follow answer length.

    - length_correlation: Spearman's rho between each answer's reward and its length in characters;
    - accuracy_longer_preferred / accuracy_shorter_preferred: accuracy on the pairs whose preferred answer
      is the longer / the shorter one (pairs of equal length are in neither, counted apart). A model that
      rewards length scores high on the first and low on the second; one that reads quality scores alike.
    """
    longer = [m for (b, w), m in zip(pair_lengths, pair_margins, strict=True) if b > w]
    shorter = [m for (b, w), m in zip(pair_lengths, pair_margins, strict=True) if b < w]
    return {
        "length_correlation": _rounded(spearman_correlation(answer_lengths, answer_rewards)),
        "length_answers": len(answer_lengths),
        "accuracy_longer_preferred": margin_accuracy(longer),
        "pairs_longer_preferred": len(longer),
        "accuracy_shorter_preferred": margin_accuracy(shorter),
        "pairs_shorter_preferred": len(shorter),
        "pairs_same_length": len(pair_margins) - len(longer) - len(shorter),
    }


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def calibration(pair_margins: Sequence[float], bins: int = CALIBRATION_BINS) -> dict[str, Any]:
    """Reliability of σ(r_a − r_b) as the probability that people prefer a, and its expected error.

    Each pair counts in both orders, (σ(margin), preferred) and (σ(−margin), not preferred), so the curve
    spans 0..1 whatever order a file lists a pair in; over equal bins, this gives the same expected
    calibration error as binning the model's confidence in its own pick. ECE = Σ (n_bin / n) ·
    |observed rate − mean predicted| over the non-empty bins.
    """
    counts = [0] * bins
    predicted = [0.0] * bins
    observed = [0.0] * bins
    for margin in pair_margins:
        p = _sigmoid(margin)
        for probability, outcome in ((p, 1.0), (1 - p, 0.0)):
            b = min(int(probability * bins), bins - 1)
            counts[b] += 1
            predicted[b] += probability
            observed[b] += outcome
    total = sum(counts)
    curve = []
    ece = 0.0
    for b in range(bins):
        n = counts[b]
        mean_p = predicted[b] / n if n else None
        rate = observed[b] / n if n else None
        if n:
            ece += n / total * abs(rate - mean_p)
        curve.append(
            {
                "low": round(b / bins, 4),
                "high": round((b + 1) / bins, 4),
                "pairs": n,
                "predicted": _rounded(mean_p),
                "observed": _rounded(rate),
            }
        )
    return {"ece": round(ece, 6) if total else None, "calibration": curve}


def human_ceiling(
    items: Sequence[tuple[Sequence[tuple[str, Sequence[Sequence[int]]]], Sequence[float]]],
) -> dict[str, Any]:
    """How often one annotator agrees with the consensus of the others, and the model on the same pairs.

    `items` holds, per item, its rankings by annotator (tie groups of answer indices, best first) and the
    model's reward of each answer. For every annotator of an item that others ranked too, the others'
    rankings are merged (Tideman's ranked pairs, as the consensus export does) and each of the annotator's
    pairs that the merge orders counts: the human ceiling is the share the merge orders the same way, and
    the model's accuracy on the same pairs is the share it orders so. Pairs the merge leaves tied count in
    neither. Rankings without an annotator name, and a second ranking by the same name, are left out.
    """
    agree = model_right = total = 0
    items_used = 0
    annotators: set[str] = set()
    for rankings, rewards in items:
        by_name: dict[str, Sequence[Sequence[int]]] = {}
        for name, order in rankings:
            if name and name not in by_name:
                by_name[name] = order
        if len(by_name) < 2:
            continue
        used = False
        for name, order in by_name.items():
            others = [other for who, other in by_name.items() if who != name]
            levels = rank_levels(ranked_pairs(others))
            for better, worse in _ordered_pairs(order):
                if better not in levels or worse not in levels or levels[better] == levels[worse]:
                    continue
                total += 1
                agree += levels[better] < levels[worse]
                model_right += rewards[better] > rewards[worse]
                used = True
                annotators.add(name)
        items_used += used
    return {
        "human_ceiling": round(agree / total, 6) if total else None,
        "accuracy_on_ceiling_pairs": round(model_right / total, 6) if total else None,
        "ceiling_pairs": total,
        "ceiling_items": items_used,
        "ceiling_annotators": len(annotators),
    }


def _ordered_pairs(order: Sequence[Sequence[int]]) -> list[tuple[int, int]]:
    return [(pair.chosen, pair.rejected) for pair in ranking_pairs(order)]


def slice_accuracy(
    labelled_margins: Sequence[tuple[str, float]],
) -> tuple[dict[str, float | None], dict[str, int]]:
    """Accuracy and pair count per label, from (label, margin) pairs; labels sorted by name."""
    grouped: dict[str, list[float]] = {}
    for label, margin in labelled_margins:
        grouped.setdefault(label, []).append(margin)
    names = sorted(grouped)
    accuracy = {name: margin_accuracy(grouped[name]) for name in names}
    return accuracy, {name: len(grouped[name]) for name in names}


def margin_accuracy(margins: Sequence[float]) -> float | None:
    """Share of margins above 0 (a tie counts as wrong, as in `ranking_metrics`); None when there are none."""
    return round(sum(m > 0 for m in margins) / len(margins), 6) if margins else None


def _rounded(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)
