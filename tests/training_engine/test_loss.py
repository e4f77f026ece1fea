"""Loss values against hand computation, gradients, ties, and equality with TRL's pairwise loss at K=2."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from training.reward_model.data import pairs_from_ranking
from training.reward_model.loss import (
    batch_loss_sum,
    kwise_bradley_terry_loss,
    plackett_luce_group_terms,
)


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_kwise_bt_matches_hand_computation():
    r = torch.tensor([2.0, 0.5, -1.0])  # ranking 0 > 1 > 2: three ordered pairs
    pairs = pairs_from_ranking([[0], [1], [2]])
    assert pairs == [(0, 1), (0, 2), (1, 2)]
    b, w = (torch.tensor(x) for x in zip(*pairs, strict=True))
    expected = -(math.log(_sig(1.5)) + math.log(_sig(3.0)) + math.log(_sig(1.5))) / 3
    assert math.isclose(kwise_bradley_terry_loss(r, b, w).item(), expected, rel_tol=1e-6)


def test_ties_form_no_pair_and_loss_ignores_them():
    pairs = pairs_from_ranking([[0, 2], [1], [3]])
    assert sorted(pairs) == sorted([(0, 1), (2, 1), (0, 3), (2, 3), (1, 3)])
    assert (0, 2) not in pairs and (2, 0) not in pairs
    r = torch.tensor([1.0, 0.0, 3.0, -2.0])
    b, w = (torch.tensor(x) for x in zip(*pairs, strict=True))
    expected = -sum(math.log(_sig(r[i].item() - r[j].item())) for i, j in pairs) / len(pairs)
    assert math.isclose(kwise_bradley_terry_loss(r, b, w).item(), expected, rel_tol=1e-6)
    # Changing the gap between the tied answers 0 and 2 alone must not matter through a (0, 2) term.
    assert pairs_from_ranking([[0, 1]]) == []


def test_kwise_equals_trl_loss_for_k2_with_and_without_centering():
    torch.manual_seed(0)
    chosen, rejected = torch.randn(7), torch.randn(7)
    # TRL RewardTrainer.compute_loss: -logsigmoid(chosen - rejected).mean()
    #   (+ center_rewards_coefficient * mean((chosen + rejected) ** 2))
    trl = -F.logsigmoid(chosen - rejected).mean()
    trl_centered = trl + 0.01 * torch.mean((chosen + rejected) ** 2)
    # Our layout: groups of two answers, flattened; pairs index into the flat rewards.
    flat = torch.stack([chosen, rejected], dim=1).reshape(-1)
    better = torch.arange(0, 14, 2)
    worse = better + 1
    assert torch.allclose(kwise_bradley_terry_loss(flat, better, worse), trl, atol=1e-7)
    assert torch.allclose(kwise_bradley_terry_loss(flat, better, worse, 0.01), trl_centered, atol=1e-7)
    total, count = batch_loss_sum(flat, better, worse, torch.arange(7), [None] * 7, "kwise", 0.01)
    assert torch.allclose(total / count, trl_centered, atol=1e-6)


def test_kwise_gradient_matches_autograd_gradcheck_and_closed_form():
    r = torch.tensor([0.3, -0.2, 1.1, 0.0], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([0, 0, 1, 2])
    w = torch.tensor([1, 3, 3, 3])
    assert torch.autograd.gradcheck(lambda x: kwise_bradley_terry_loss(x, b, w, 0.1), (r,))
    kwise_bradley_terry_loss(r, b, w).backward()
    # d/dr of -log sig(r_b - r_w) is -(1 - sig(d)) for the better answer and +(1 - sig(d)) for the worse.
    expected = torch.zeros(4, dtype=torch.float64)
    for i, j in zip(b.tolist(), w.tolist(), strict=True):
        g = 1 - _sig(r[i].item() - r[j].item())
        expected[i] -= g / 4
        expected[j] += g / 4
    assert torch.allclose(r.grad, expected)


def test_plackett_luce_hand_computation_and_k2_equals_bt():
    r = torch.tensor([1.0, 0.0, -1.0])
    # ranking 0 > 1 > 2: -[r0 - lse(r0,r1,r2)] - [r1 - lse(r1,r2)], averaged over its 2 choices
    lse = torch.logsumexp
    expected = (-(r[0] - lse(r, 0)) - (r[1] - lse(r[1:], 0))) / 2
    got = plackett_luce_group_terms(r, [[[0], [1], [2]]])
    assert torch.allclose(got, expected.reshape(1))
    two = torch.tensor([0.7, -0.4])
    pl = plackett_luce_group_terms(two, [[[0], [1]]])
    bt = kwise_bradley_terry_loss(two, torch.tensor([0]), torch.tensor([1]))
    assert torch.allclose(pl[0], bt)


def test_plackett_luce_ties_use_breslow_and_gradcheck():
    r = torch.tensor([0.5, 0.2, -0.3], dtype=torch.float64, requires_grad=True)
    # {0, 1} tied above 2: both are chosen against {0, 1, 2}; the last group chooses nothing.
    got = plackett_luce_group_terms(r, [[[0, 1], [2]]])
    lse = torch.logsumexp(r, 0)
    expected = ((lse - r[0]) + (lse - r[1])) / 2
    assert torch.allclose(got[0], expected)
    assert torch.autograd.gradcheck(lambda x: plackett_luce_group_terms(x, [[[0, 1], [2]]]).sum(), (r,))


def test_plackett_luce_falls_back_to_pairs_for_groups_without_ranking():
    r = torch.tensor([1.0, 0.0, 0.5, -0.5])
    better, worse, group = torch.tensor([0, 2]), torch.tensor([1, 3]), torch.tensor([0, 1])
    total, count = batch_loss_sum(r, better, worse, group, [[[0], [1]], None], "plackett-luce")
    assert count == 2
    expected = -math.log(_sig(1.0)) - math.log(_sig(1.0))
    assert math.isclose(total.item(), expected, rel_tol=1e-6)


def test_k2_loss_and_gradient_equal_trl_reward_trainer_compute_loss():
    """Run TRL's own RewardTrainer.compute_loss (on a stub trainer) against our loss on the same rewards."""
    import collections
    import types

    import pytest

    trl_reward = pytest.importorskip("trl.trainer.reward_trainer")
    torch.manual_seed(1)
    table = torch.nn.Parameter(torch.randn(12))  # reward of "sequence" i is table[i]

    def model(input_ids, attention_mask, use_cache=False):
        return types.SimpleNamespace(logits=table[input_ids[:, 0]].unsqueeze(-1))

    accel = types.SimpleNamespace(gather_for_metrics=lambda x: x, gather=lambda x: x)
    for coef in (None, 0.01):
        stub = types.SimpleNamespace(
            model=types.SimpleNamespace(training=True),
            args=types.SimpleNamespace(center_rewards_coefficient=coef),
            accelerator=accel,
            _total_train_tokens=0,
            _tp_size=1,
            _metrics=collections.defaultdict(lambda: collections.defaultdict(list)),
        )
        # TRL's batch: the first half are the chosen sequences, the second half the rejected ones.
        ids = torch.arange(12).unsqueeze(1)
        trl_loss = trl_reward.RewardTrainer.compute_loss(
            stub, model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        )
        (trl_grad,) = torch.autograd.grad(trl_loss, table)
        # Ours: six groups of two answers (chosen, rejected), flattened group by group.
        order = torch.stack([torch.arange(6), torch.arange(6, 12)], 1).reshape(-1)
        rewards = table[order]
        better, worse = torch.arange(0, 12, 2), torch.arange(1, 12, 2)
        total, count = batch_loss_sum(rewards, better, worse, torch.arange(6), [None] * 6, "kwise", coef)
        ours = total / count
        (our_grad,) = torch.autograd.grad(ours, table)
        assert torch.allclose(ours, trl_loss, atol=1e-6)
        assert torch.allclose(our_grad, trl_grad, atol=1e-6)


def test_step_term_count_is_the_count_the_loss_divides_by():
    from training.reward_model.batching import EncodedGroup, collate
    from training.reward_model.trainer import _step_term_count

    ranked = EncodedGroup("a", [[1, 2], [3], [4, 5, 6]], None, [(0, 1), (0, 2), (1, 2)], [[0], [1], [2]])
    unranked = EncodedGroup("b", [[7], [8], [9]], None, [(0, 1), (2, 1)], None)
    batch = collate([ranked, unranked, ranked], pad_token_id=0)
    rewards = torch.randn(len(batch["input_ids"]))
    for loss in ("kwise", "plackett-luce"):
        _, count = batch_loss_sum(
            rewards, batch["better"], batch["worse"], batch["pair_group"], batch["rankings"], loss
        )
        assert _step_term_count(batch, loss) == count == {"kwise": 8, "plackett-luce": 4}[loss]


def test_batch_loss_reads_no_value_back_from_the_device_when_pair_group_stays_on_the_cpu():
    # The meta device holds no values: any op that would read rewards or indices back (a host sync on a
    # GPU) raises. Plackett-Luce with an unranked group is the path that selects pairs by a mask.
    rewards = torch.randn(6, device="meta", requires_grad=True)
    better, worse = torch.tensor([0, 2, 4], device="meta"), torch.tensor([1, 3, 5], device="meta")
    rankings = [[[0], [1]], None, None]
    total, count = batch_loss_sum(
        rewards, better, worse, torch.tensor([0, 1, 2]), rankings, "plackett-luce", 0.01
    )
    assert total.device.type == "meta" and count == 3


def test_a_collated_batch_gives_each_ranked_group_its_own_plackett_luce_term():
    from training.reward_model.batching import EncodedGroup, collate

    tied = EncodedGroup(
        "a", [[1], [2], [3], [4]], None, [(0, 2), (1, 2), (0, 3), (1, 3), (2, 3)], [[0, 1], [2], [3]]
    )
    unranked = EncodedGroup("b", [[5], [6]], None, [(1, 0)], None)
    reversed_ = EncodedGroup("c", [[7], [8], [9]], None, [(2, 1), (2, 0), (1, 0)], [[2], [1], [0]])
    batch = collate([tied, unranked, reversed_], pad_token_id=0)
    rewards = torch.tensor([0.5, 0.2, -0.3, 1.0, 0.1, 0.4, 2.0, -1.0, 0.3])
    total, count = batch_loss_sum(
        rewards,
        batch["better"],
        batch["worse"],
        batch["pair_group"],
        batch["rankings"],
        "plackett-luce",
    )
    # Each ranked group on its own rewards, plus the unranked group's one Bradley-Terry pair (0.4 > 0.1).
    by_group = plackett_luce_group_terms(rewards[:4], [tied.ranking]).sum()
    by_group += plackett_luce_group_terms(rewards[6:], [reversed_.ranking]).sum()
    by_group += -math.log(_sig(0.4 - 0.1))
    assert count == 3
    assert math.isclose(total.item(), by_group.item(), rel_tol=1e-6)
