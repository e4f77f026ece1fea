"""One ranking per item from everyone's rankings: Tideman's ranked pairs over the pairwise majorities.

Pure functions over rankings written as tie groups, best first. Ties in the input count for neither
answer of the pair; a majority tie makes no edge, and the consensus keeps such answers tied. Pairs of
equal strength are locked in a fixed order derived from `candidates`, so the result never depends on
the order the rankings arrive in.
"""

from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from .pairs import ranking_pairs
from .rankings import Mean, Ranking, kendall_tau_b, rank_levels


def pairwise_wins(rankings: Sequence[Ranking]) -> dict[tuple[Hashable, Hashable], int]:
    """How many rankings put the first answer of each ordered pair above the second."""
    return Counter((pair.chosen, pair.rejected) for ranking in rankings for pair in ranking_pairs(ranking))


def ranked_pairs(rankings: Sequence[Ranking], *, candidates: Sequence[Hashable] = ()) -> list[list[Hashable]]:
    """Tideman's ranked pairs as tie groups, best first, over every answer some ranking placed.

    `candidates` is the tie-break order (earlier wins ties); answers it does not name follow, sorted.
    """
    ranked = {answer for ranking in rankings for group in ranking for answer in group}
    order = [c for c in candidates if c in ranked]
    if len(order) < len(ranked):
        order += sorted(ranked - set(order), key=lambda answer: (str(type(answer)), answer))
    index = {answer: i for i, answer in enumerate(order)}
    n = len(order)

    # Answers become indices 0..n-1 and sets of them bitmasks: this runs once per item of an export.
    wins = [[0] * n for _ in range(n)]
    for ranking in rankings:
        above: list[int] = []
        for group in ranking:
            members = [index[answer] for answer in group]
            for worse in members:
                for better in above:
                    wins[better][worse] += 1
            above.extend(members)
    # Strongest first: most winning votes, then fewest opposing; equal pairs in tie-break order
    # (the winner ranked first in `candidates` first, and for one winner the lower-ranked loser first).
    majorities = [
        (wins[a][b], wins[b][a], a, b) for a in range(n) for b in range(n) if wins[a][b] > wins[b][a]
    ]
    if len(majorities) == n * (n - 1) // 2:
        # A majority for every pair: when they never form a cycle (the answers' numbers of majorities
        # won are then n-1, n-2, ..., 0), every pair gets locked and the result is that order.
        won = [0] * n
        for _, _, winner, _ in majorities:
            won[winner] += 1
        if len(set(won)) == n:
            return [[order[x]] for x in sorted(range(n), key=won.__getitem__, reverse=True)]
    majorities.sort(key=lambda m: (-m[0], m[1], m[2], -m[3]))

    beats = [0] * n  # locked edges out of each answer
    reaches = [1 << i for i in range(n)]  # everything each answer reaches through locked edges, itself too
    for _, _, winner, loser in majorities:
        if reaches[loser] >> winner & 1:
            continue  # locking it would close a cycle
        beats[winner] |= 1 << loser
        for x in range(n):
            if reaches[x] >> winner & 1:
                reaches[x] |= reaches[loser]

    # Peel off the answers nothing remaining beats; those share a level only when no majority
    # separates them (a skipped majority always has a locked path the other way).
    remaining = (1 << n) - 1
    result = []
    while remaining:
        beaten = 0
        for x in range(n):
            if remaining >> x & 1:
                beaten |= beats[x]
        beaten &= remaining
        level = remaining & ~beaten
        result.append([order[x] for x in range(n) if level >> x & 1])
        remaining = beaten
    return result


@dataclass(frozen=True)
class Consensus:
    """An item's merged ranking and how well its annotators agree with it."""

    ranking: list[list[Hashable]]
    n_annotators: int
    # Annotators whose best group holds one of the consensus's best answers.
    n_agreeing: int
    # Mean Kendall τ-b of each annotator's ranking against the consensus.
    agreement: float | None


def item_consensus(rankings: Sequence[Ranking], *, candidates: Sequence[Hashable] = ()) -> Consensus:
    """The consensus of one item's rankings, with how many annotators agree with its best answer."""
    rankings = [ranking for ranking in rankings if any(ranking)]
    merged = ranked_pairs(rankings, candidates=candidates)
    best = set(merged[0]) if merged else set()
    n_agreeing = 0
    tau = Mean()
    for ranking in rankings:
        first = next((group for group in ranking if group), [])
        if best & set(first):
            n_agreeing += 1
        if len(rankings) > 1:
            tau.add(kendall_tau_b(ranking, merged))
    return Consensus(ranking=merged, n_annotators=len(rankings), n_agreeing=n_agreeing, agreement=tau.value)


__all__ = ["Consensus", "item_consensus", "pairwise_wins", "rank_levels", "ranked_pairs"]
