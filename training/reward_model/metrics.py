"""Held-out ranking metrics computed from per-answer rewards."""

from __future__ import annotations

from collections.abc import Sequence


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
