"""How much annotators agree: Kendall's τ-b, Krippendorff's α (ordinal) and agreement with the others.

Pure functions over rankings written as tie groups, best first (`[[12], [14, 15], [13]]`); nothing here
touches the database, so a whole project can be fed through `ProjectAgreement` one item at a time.
"""

from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

from .consensus import ranked_pairs
from .rankings import Mean, Ranking, kendall_tau_b, rank_levels


class OrdinalAlpha:
    """Krippendorff's α with the ordinal metric, accumulated one unit at a time (coincidence matrix)."""

    def __init__(self) -> None:
        self.coincidences: dict[tuple[int, int], float] = defaultdict(float)

    def add_unit(self, values: Sequence[int]) -> None:
        """Add one unit: the values the coders who coded it gave (missing values left out)."""
        m = len(values)
        if m < 2:
            return  # an unpairable unit carries no information about agreement
        for i, c in enumerate(values):
            for j, k in enumerate(values):
                if i != j:
                    self.coincidences[(c, k)] += 1 / (m - 1)

    def alpha(self) -> float | None:
        """α = 1 − D_o / D_e; None without pairable values or when every value is the same."""
        totals: dict[int, float] = defaultdict(float)
        for (c, _), count in self.coincidences.items():
            totals[c] += count
        n = sum(totals.values())
        if n <= 1:
            return None
        values = sorted(totals)
        position = {value: index for index, value in enumerate(values)}
        cumulative = [0.0]
        for value in values:
            cumulative.append(cumulative[-1] + totals[value])

        def distance(c: int, k: int) -> float:
            low, high = sorted((position[c], position[k]))
            between = cumulative[high + 1] - cumulative[low]
            return (between - (totals[c] + totals[k]) / 2) ** 2

        observed = sum(count * distance(c, k) for (c, k), count in self.coincidences.items())
        expected = sum(totals[c] * totals[k] * distance(c, k) for c in values for k in values) / (n - 1)
        if expected == 0:
            return None
        return 1 - observed / expected


def krippendorff_alpha_ordinal(units: Iterable[Sequence[int]]) -> float | None:
    """Krippendorff's α (ordinal) over units, each the list of values its coders gave."""
    accumulator = OrdinalAlpha()
    for values in units:
        accumulator.add_unit(values)
    return accumulator.alpha()


@dataclass(frozen=True)
class AnnotatorAgreement:
    """One annotator against the consensus of the others, over `items` items shared with them."""

    annotator: str
    items: int
    tau_b: float | None


@dataclass(frozen=True)
class AgreementSummary:
    """A project's agreement figures."""

    items: int
    comparisons: int
    mean_tau_b: float | None
    alpha_ordinal: float | None
    annotators: list[AnnotatorAgreement]


class ProjectAgreement:
    """Feed items one at a time (`add_item`), then read `summary()`; memory grows with annotators only."""

    def __init__(self) -> None:
        self.items = 0
        self.tau = Mean()
        self.alpha = OrdinalAlpha()
        self.per_annotator: dict[str, Mean] = defaultdict(Mean)
        self.per_annotator_items: dict[str, int] = defaultdict(int)

    def add_item(self, rankings: Mapping[str, Ranking], candidates: Sequence[Hashable] = ()) -> None:
        """Add one item's rankings by annotator; `candidates` fixes the tie-break order of its answers."""
        rankings = {who: ranking for who, ranking in rankings.items() if any(ranking)}
        if len(rankings) < 2:
            return
        self.items += 1
        for first, second in combinations(rankings.values(), 2):
            self.tau.add(kendall_tau_b(first, second))
        levels = [rank_levels(ranking) for ranking in rankings.values()]
        answers = {answer for level in levels for answer in level}
        for answer in sorted(answers, key=str):
            self.alpha.add_unit([level[answer] for level in levels if answer in level])
        for who, ranking in rankings.items():
            others = [other for name, other in rankings.items() if name != who]
            consensus = ranked_pairs(others, candidates=candidates)
            self.per_annotator[who].add(kendall_tau_b(ranking, consensus))
            self.per_annotator_items[who] += 1

    def summary(self) -> AgreementSummary:
        """The figures so far."""
        annotators = [
            AnnotatorAgreement(annotator=who, items=self.per_annotator_items[who], tau_b=mean.value)
            for who, mean in sorted(self.per_annotator.items())
        ]
        return AgreementSummary(
            items=self.items,
            comparisons=self.tau.count,
            mean_tau_b=self.tau.value,
            alpha_ordinal=self.alpha.alpha(),
            annotators=annotators,
        )
