"""Tideman's ranked pairs on hand-worked elections; pure functions, no database."""

import itertools

from preferences.consensus import item_consensus, pairwise_wins, ranked_pairs
from preferences.pairs import ranking_pairs


def test_tennessee_capital_election_elects_nashville_then_chattanooga_knoxville_memphis():
    # The textbook ranked-pairs example: 42% Memphis voters, 26% Nashville, 15% Chattanooga, 17% Knoxville.
    rankings = (
        [[["M"], ["N"], ["C"], ["K"]]] * 42
        + [[["N"], ["C"], ["K"], ["M"]]] * 26
        + [[["C"], ["K"], ["N"], ["M"]]] * 15
        + [[["K"], ["C"], ["N"], ["M"]]] * 17
    )
    assert ranked_pairs(rankings) == [["N"], ["C"], ["K"], ["M"]]


def test_weakest_majority_of_a_cycle_is_the_one_dropped():
    # A>B 7-4, B>C 9-2, C>A 6-5: C>A is the weakest and would close the cycle.
    rankings = [[["A"], ["B"], ["C"]]] * 5 + [[["B"], ["C"], ["A"]]] * 4 + [[["C"], ["A"], ["B"]]] * 2
    assert ranked_pairs(rankings) == [["A"], ["B"], ["C"]]


def test_a_perfect_cycle_is_broken_by_the_candidate_order_whatever_order_the_rankings_come_in():
    rankings = [[["A"], ["B"], ["C"]], [["B"], ["C"], ["A"]], [["C"], ["A"], ["B"]]]
    results = {
        str(ranked_pairs(list(permutation), candidates=["A", "B", "C"]))
        for permutation in itertools.permutations(rankings)
    }
    assert results == {str([["A"], ["B"], ["C"]])}
    assert ranked_pairs(rankings, candidates=["B", "C", "A"]) == [["B"], ["C"], ["A"]]


def test_ties_in_the_input_count_for_neither_answer():
    wins = pairwise_wins([[[1, 2], [3]], [[1], [2], [3]]])
    assert wins[(1, 2)] == 1 and (2, 1) not in wins
    assert wins[(1, 3)] == 2 and wins[(2, 3)] == 2
    assert ranked_pairs([[[1, 2], [3]], [[1], [2], [3]]]) == [[1], [2], [3]]


def test_a_majority_tie_stays_a_tie_in_the_consensus():
    assert ranked_pairs([[[1], [2]], [[2], [1]]], candidates=[2, 1]) == [[2, 1]]


def test_answers_nobody_ranked_are_left_out():
    assert ranked_pairs([[[5], [3]]], candidates=[3, 4, 5]) == [[5], [3]]


def test_item_consensus_counts_annotators_and_those_who_chose_the_same_best_answer():
    consensus = item_consensus([[[1], [2], [3]], [[1], [3], [2]], [[2], [1], [3]]], candidates=[1, 2, 3])
    assert consensus.ranking == [[1], [2], [3]]
    assert consensus.n_annotators == 3
    assert consensus.n_agreeing == 2
    # τ-b against [1,2,3]: 1, 1/3, 1/3.
    assert abs(consensus.agreement - (1 + 1 / 3 + 1 / 3) / 3) < 1e-12


def test_one_ranking_is_its_own_consensus_without_an_agreement_figure():
    consensus = item_consensus([[[2], [1, 3]]])
    assert consensus.ranking == [[2], [1, 3]]
    assert (consensus.n_annotators, consensus.n_agreeing, consensus.agreement) == (1, 1, None)


def test_ranking_pairs_cross_tie_groups_with_their_gap():
    assert ranking_pairs([[1], [2, 3], [4]]) == [(1, 2, 1), (1, 3, 1), (1, 4, 2), (2, 4, 1), (3, 4, 1)]


def test_ranking_pairs_close_the_gap_an_excluded_answer_leaves():
    assert ranking_pairs([[1], [2], [3]], exclude={2}) == [(1, 3, 1)]
    assert ranking_pairs([[1, 2]]) == []


def test_ranking_pairs_match_every_cross_group_pair_on_random_rankings():
    import random

    rng = random.Random(3)
    for _ in range(2000):
        answers = list(range(rng.randint(0, 7)))
        rng.shuffle(answers)
        groups, current = [], []
        for answer in answers:
            current.append(answer)
            if rng.random() < 0.5:
                groups.append(current)
                current = []
        if current:
            groups.append(current)
        expected = [
            (chosen, rejected, j - i)
            for i, better in enumerate(groups)
            for j, worse in enumerate(groups)
            if j > i
            for chosen in better
            for rejected in worse
        ]
        assert [tuple(pair) for pair in ranking_pairs(groups)] == expected
