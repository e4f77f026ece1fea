"""The one place that turns a ranking (tie groups, best first) into ordered preference pairs."""

from collections.abc import Collection, Hashable, Sequence
from typing import NamedTuple, TypeVar

Candidate = TypeVar("Candidate", bound=Hashable)


class Pair(NamedTuple):
    """One preference: `chosen` was ranked above `rejected`, `rank_gap` tie groups apart (1 = adjacent)."""

    chosen: Hashable
    rejected: Hashable
    rank_gap: int


def ranking_pairs(
    ranking: Sequence[Sequence[Candidate]], *, exclude: Collection[Candidate] = ()
) -> list[Pair]:
    """Every ordered pair across tie groups, best first; tied answers form no pair.

    Excluded answers (flagged, say) are taken out before the gaps are counted, so a group that
    empties does not leave a hole in `rank_gap`.
    """
    if exclude:
        groups = [[c for c in group if c not in exclude] for group in ranking]
        groups = [group for group in groups if group]
    else:
        groups = [group for group in ranking if group]
    pairs = []
    for level, better in enumerate(groups):
        for gap, worse in enumerate(groups[level + 1 :], start=1):
            pairs.extend(Pair(chosen, rejected, gap) for chosen in better for rejected in worse)
    return pairs
