"""The one place that turns a ranking (tie groups, best first) into ordered preference pairs."""

import functools
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
    if all(len(group) == 1 for group in groups):
        # No ties, the usual case and the one large exports spend their time on.
        flat = [group[0] for group in groups]
        return [_new(Pair, (flat[i], flat[j], gap)) for i, j, gap in _index_pairs(len(flat))]
    return [
        _new(Pair, (chosen, rejected, gap))
        for i, j, gap in _index_pairs(len(groups))
        for chosen in groups[i]
        for rejected in groups[j]
    ]


_new = tuple.__new__  # builds a Pair from a tuple without NamedTuple's argument handling


@functools.cache
def _index_pairs(n: int) -> tuple[tuple[int, int, int], ...]:
    """(better level, worse level, gap) for every two of n levels, in output order."""
    return tuple((i, j, j - i) for i in range(n) for j in range(i + 1, n))
