"""Agreement figures against hand-computed values and scipy."""

import random

import pytest
from scipy.stats import kendalltau

from preferences.agreement import ProjectAgreement, krippendorff_alpha_ordinal
from preferences.rankings import kendall_tau_b, rank_levels


def test_tau_b_of_one_swapped_pair_is_one_third():
    assert kendall_tau_b([[1], [2], [3]], [[1], [3], [2]]) == pytest.approx(1 / 3)


def test_tau_b_with_a_tie_matches_the_hand_computed_value():
    # Pairs: (1,2) tied in the first only, (1,3) and (2,3) concordant: 2 / sqrt((3-1) * 3).
    assert kendall_tau_b([[1, 2], [3]], [[1], [2], [3]]) == pytest.approx(2 / 6**0.5)


def test_tau_b_uses_only_the_answers_both_ranked_and_is_undefined_when_all_tied():
    assert kendall_tau_b([[1], [2], [9]], [[2], [1], [8]]) == pytest.approx(-1.0)
    assert kendall_tau_b([[1, 2, 3]], [[1], [2], [3]]) is None
    assert kendall_tau_b([[1]], [[1]]) is None


def test_tau_b_equals_scipy_kendalltau_on_random_rankings_with_ties():
    rng = random.Random(5)
    for _ in range(200):
        answers = list(range(rng.randint(2, 7)))
        rankings = []
        for _ in range(2):
            rng.shuffle(answers)
            groups, current = [], []
            for answer in answers:
                current.append(answer)
                if rng.random() < 0.6:
                    groups.append(current)
                    current = []
            if current:
                groups.append(current)
            rankings.append(groups)
        first, second = (rank_levels(r) for r in rankings)
        expected = kendalltau([first[a] for a in answers], [second[a] for a in answers]).statistic
        ours = kendall_tau_b(*rankings)
        if ours is None:
            assert expected != expected  # scipy says nan
        else:
            assert ours == pytest.approx(expected)


def test_krippendorff_alpha_ordinal_matches_krippendorffs_worked_example():
    # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability": 4 coders, 12 units,
    # α ordinal = 0.815 (nominal 0.743, interval 0.849). None marks a missing value.
    coders = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    ]
    units = [[coder[u] for coder in coders if coder[u] is not None] for u in range(12)]
    assert krippendorff_alpha_ordinal(units) == pytest.approx(0.815, abs=5e-4)


def test_alpha_is_one_for_identical_rankings_and_undefined_without_variation():
    assert krippendorff_alpha_ordinal([[1, 1], [2, 2], [3, 3]]) == pytest.approx(1.0)
    assert krippendorff_alpha_ordinal([[1, 1], [1, 1]]) is None


def test_the_annotator_who_reverses_everyone_scores_minus_one_against_the_others():
    agreement = ProjectAgreement()
    same = [[1], [2], [3]]
    agreement.add_item({"a": same, "b": same, "d": same, "c": [[3], [2], [1]]}, candidates=[1, 2, 3])
    summary = agreement.summary()
    by_name = {row.annotator: row.tau_b for row in summary.annotators}
    assert by_name == {"a": 1.0, "b": 1.0, "c": -1.0, "d": 1.0}
    assert summary.mean_tau_b == pytest.approx(0.0)  # three pairs at +1, three at -1
    assert summary.items == 1 and summary.comparisons == 6


def test_items_with_a_single_ranking_do_not_count():
    agreement = ProjectAgreement()
    agreement.add_item({"a": [[1], [2]]})
    summary = agreement.summary()
    assert (summary.items, summary.mean_tau_b, summary.alpha_ordinal) == (0, None, None)
    assert summary.annotators == []
