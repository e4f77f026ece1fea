"""One ranking per item from everyone's rankings: Tideman's ranked pairs over the pairwise majorities.

Pure functions over rankings written as tie groups, best first. Ties in the input count for neither
answer of the pair; a majority tie makes no edge, and the consensus keeps such answers tied. Pairs of
equal strength are locked in a fixed order derived from `candidates`, so the result never depends on
the order the rankings arrive in.
"""

from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from .agreement import Mean, Ranking, kendall_tau_b, rank_levels


def pairwise_wins(rankings: Sequence[Ranking]) -> dict[tuple[Hashable, Hashable], int]:
    """How many rankings put the first answer of each ordered pair above the second."""
    wins: dict[tuple[Hashable, Hashable], int] = defaultdict(int)
    for ranking in rankings:
        groups = [list(group) for group in ranking if group]
        for level, better in enumerate(groups):
            for worse in groups[level + 1 :]:
                for a in better:
                    for b in worse:
                        wins[(a, b)] += 1
    return wins


def _reaches(edges: dict[Hashable, set[Hashable]], start: Hashable, goal: Hashable) -> bool:
    stack, seen = [start], {start}
    while stack:
        node = stack.pop()
        if node == goal:
            return True
        for following in edges[node] - seen:
            seen.add(following)
            stack.append(following)
    return False


def ranked_pairs(rankings: Sequence[Ranking], *, candidates: Sequence[Hashable] = ()) -> list[list[Hashable]]:
    """Tideman's ranked pairs as tie groups, best first, over every answer some ranking placed.

    `candidates` is the tie-break order (earlier wins ties); answers it does not name follow, sorted.
    """
    ranked = {answer for ranking in rankings for group in ranking for answer in group}
    order = [c for c in candidates if c in ranked]
    order += sorted(ranked - set(order), key=lambda answer: (str(type(answer)), answer))
    index = {answer: i for i, answer in enumerate(order)}
    wins = pairwise_wins(rankings)

    majorities = []
    for (a, b), for_a in wins.items():
        for_b = wins.get((b, a), 0)
        if for_a > for_b:
            majorities.append((a, b, for_a, for_b))
    # Strongest first: most winning votes, then fewest opposing; equal pairs in tie-break order
    # (the winner ranked first in `candidates` first, and for one winner the lower-ranked loser first).
    majorities.sort(key=lambda m: (-m[2], m[3], index[m[0]], -index[m[1]]))

    edges: dict[Hashable, set[Hashable]] = {answer: set() for answer in order}
    for winner, loser, _, _ in majorities:
        if not _reaches(edges, loser, winner):
            edges[winner].add(loser)

    # Peel off the answers nothing remaining beats; those share a level only when no majority
    # separates them (a skipped majority always has a locked path the other way).
    remaining = list(order)
    result = []
    while remaining:
        beaten = {loser for winner in remaining for loser in edges[winner]}
        level = [answer for answer in remaining if answer not in beaten]
        result.append(level)
        remaining = [answer for answer in remaining if answer in beaten]
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
