"""Rankings written as tie groups, best first (`[[12], [14, 15], [13]]`): levels and Kendall's τ-b.

The base that agreement and consensus both build on; pure Python.
"""

import math
from collections.abc import Hashable, Sequence
from itertools import combinations

Ranking = Sequence[Sequence[Hashable]]


def rank_levels(ranking: Ranking) -> dict[Hashable, int]:
    """Each ranked answer's tie-group level, 1 for the best group."""
    return {answer: level for level, group in enumerate(ranking, start=1) for answer in group}


def kendall_tau_b(first: Ranking, second: Ranking) -> float | None:
    """Kendall's τ-b between two rankings over the answers both ranked; None when it is undefined."""
    a, b = rank_levels(first), rank_levels(second)
    shared = [answer for answer in a if answer in b]
    concordant = discordant = tied_first = tied_second = 0
    for x, y in combinations(shared, 2):
        da, db = a[x] - a[y], b[x] - b[y]
        if da == 0:
            tied_first += 1
        if db == 0:
            tied_second += 1
        if da and db:
            if (da > 0) == (db > 0):
                concordant += 1
            else:
                discordant += 1
    total = len(shared) * (len(shared) - 1) // 2
    denominator = math.sqrt((total - tied_first) * (total - tied_second))
    if denominator == 0:
        return None
    return (concordant - discordant) / denominator


class Mean:
    """A running mean that ignores undefined values."""

    def __init__(self) -> None:
        self.total = 0.0
        self.count = 0

    def add(self, value: float | None) -> None:
        """Count a value unless it is undefined."""
        if value is not None:
            self.total += value
            self.count += 1

    @property
    def value(self) -> float | None:
        """The mean, or None before any value."""
        return self.total / self.count if self.count else None
