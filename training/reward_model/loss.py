"""K-wise ranking losses over rewards of answers that were each forwarded once.

All functions return a (sum, count) pair as well as having mean wrappers, so gradient accumulation over
micro-batches with different numbers of pairs can divide by the true total rather than averaging means.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

LOSSES = ("kwise", "plackett-luce")


def bradley_terry_terms(
    rewards: torch.Tensor, better: torch.Tensor, worse: torch.Tensor, margins: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-pair Bradley-Terry loss -log sigmoid(r_better - r_worse - margin) for every ordered pair.

    The margin (TRL's `margin` column, Llama 2's reward model) asks for a larger gap where the data says
    one answer is much better; without margins it is 0.
    """
    difference = rewards[better] - rewards[worse]
    if margins is not None:
        difference = difference - margins
    return -F.logsigmoid(difference)


def centering_terms(rewards: torch.Tensor, better: torch.Tensor, worse: torch.Tensor) -> torch.Tensor:
    """Per-pair reward-centring penalty (r_better + r_worse)^2, TRL's `center_rewards_coefficient` term."""
    return (rewards[better] + rewards[worse]) ** 2


def kwise_bradley_terry_loss(
    rewards: torch.Tensor,
    better: torch.Tensor,
    worse: torch.Tensor,
    center_rewards_coefficient: float | None = None,
) -> torch.Tensor:
    """Mean Bradley-Terry loss over all ordered pairs of the batch (+ optional centring); K=2 equals TRL."""
    loss = bradley_terry_terms(rewards, better, worse).mean()
    if center_rewards_coefficient:
        loss = loss + center_rewards_coefficient * centering_terms(rewards, better, worse).mean()
    return loss


def plackett_luce_group_terms(
    rewards: torch.Tensor, rankings: Sequence[Sequence[Sequence[int]]]
) -> torch.Tensor:
    """Per-group Plackett-Luce negative log-likelihood of its tie-group ranking, averaged over its choices.

    Ties use Breslow's approximation: every answer of a tie group is "chosen" against the same set of
    answers still in play (its own group and all worse ones). The last group chooses nothing.
    """
    # All rankings' answers, best first, in one index tensor (one copy to the device, not one per tie
    # group); each choice is (start, chosen_end, end) into it: chosen order[start:chosen_end] among the
    # answers still in play order[start:end].
    flat: list[int] = []
    spans: list[list[tuple[int, int, int]]] = []
    for ranking in rankings:
        start, end = len(flat), len(flat) + sum(len(level) for level in ranking)
        spans.append([])
        for level in ranking[:-1]:
            spans[-1].append((start, start + len(level), end))
            start += len(level)
        flat.extend(i for level in ranking for i in level)
    order = torch.tensor(flat, dtype=torch.long, device=rewards.device)
    terms = []
    for choices in spans:
        nll = rewards.new_zeros(())
        chosen = 0
        for start, chosen_end, end in choices:
            lse = torch.logsumexp(rewards[order[start:end]], dim=0)
            nll = nll + (lse - rewards[order[start:chosen_end]]).sum()
            chosen += chosen_end - start
        if chosen:
            terms.append(nll / chosen)
    if not terms:
        return rewards.new_zeros((0,))
    return torch.stack(terms)


def batch_loss_sum(
    rewards: torch.Tensor,
    better: torch.Tensor,
    worse: torch.Tensor,
    pair_group: torch.Tensor,
    rankings: Sequence[Sequence[Sequence[int]] | None],
    loss: str = "kwise",
    center_rewards_coefficient: float | None = None,
    margins: torch.Tensor | None = None,
) -> tuple[torch.Tensor, int]:
    """Summed loss of one micro-batch and the number of terms it holds (divide by the total over a step).

    `rankings[g]` holds group g's tie groups as indices into `rewards` (None when it has only pairs).
    Bradley-Terry counts one term per pair; Plackett-Luce one term per ranked group, and groups without a
    ranking fall back to their Bradley-Terry pairs. `margins` (one per pair, or None) enter the
    Bradley-Terry terms only: a ranking's Plackett-Luce likelihood has no place for them.
    """
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; expected one of {LOSSES}")
    if loss == "kwise":
        total = bradley_terry_terms(rewards, better, worse, margins).sum()
        count = int(better.numel())
    else:
        pl = plackett_luce_group_terms(rewards, [r for r in rankings if r])
        unranked_groups = [g for g, r in enumerate(rankings) if not r]
        total, count = pl.sum(), int(pl.numel())
        if unranked_groups:
            mask = torch.isin(pair_group, torch.as_tensor(unranked_groups, device=pair_group.device))
            pair_margins = None if margins is None else margins[mask]
            total = total + bradley_terry_terms(rewards, better[mask], worse[mask], pair_margins).sum()
            count += int(mask.sum())
    if center_rewards_coefficient and better.numel():
        # Scaled so that, after dividing by `count`, it is the coefficient times the mean over pairs.
        scale = count / better.numel()
        total = total + center_rewards_coefficient * scale * centering_terms(rewards, better, worse).sum()
    return total, count
