"""K-wise ranking losses over rewards of answers that were each forwarded once.

All functions return a (sum, count) pair as well as having mean wrappers, so gradient accumulation over
micro-batches with different numbers of pairs can divide by the true total rather than averaging means.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

LOSSES = ("kwise", "plackett-luce")


def bradley_terry_terms(rewards: torch.Tensor, better: torch.Tensor, worse: torch.Tensor) -> torch.Tensor:
    """Per-pair Bradley-Terry loss -log sigmoid(r_better - r_worse) for every ordered pair."""
    return -F.logsigmoid(rewards[better] - rewards[worse])


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


@dataclass(frozen=True)
class RankingIndex:
    """Rankings as one index tensor, built once per batch (by `collate`) rather than in every loss call.

    `order` lists each ranking's answers best first, one ranking after another. `choices[g]` holds ranking
    g's choices, one per tie group but the last, as (start, chosen_end, end) into `order`: the chosen answers
    are order[start:chosen_end] and the answers still in play order[start:end].
    """

    order: torch.Tensor
    choices: tuple[tuple[tuple[int, int, int], ...], ...]

    @classmethod
    def build(cls, rankings: Sequence[Sequence[Sequence[int]]]) -> RankingIndex:
        """The index of rankings given as tie groups of reward indices, best first."""
        order: list[int] = []
        choices = []
        for ranking in rankings:
            start, end = len(order), len(order) + sum(len(level) for level in ranking)
            mine = []
            for level in ranking[:-1]:
                mine.append((start, start + len(level), end))
                start += len(level)
            choices.append(tuple(mine))
            order.extend(i for level in ranking for i in level)
        return cls(torch.tensor(order, dtype=torch.long), tuple(choices))


def plackett_luce_group_terms(
    rewards: torch.Tensor, rankings: Sequence[Sequence[Sequence[int]]] | RankingIndex
) -> torch.Tensor:
    """Per-group Plackett-Luce negative log-likelihood of its tie-group ranking, averaged over its choices.

    Ties use Breslow's approximation: every answer of a tie group is "chosen" against the same set of
    answers still in play (its own group and all worse ones). The last group chooses nothing.
    """
    index = rankings if isinstance(rankings, RankingIndex) else RankingIndex.build(rankings)
    order = index.order.to(rewards.device)  # one copy; the slices below are views of it
    terms = []
    for choices in index.choices:
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
    ranking_index: RankingIndex | None = None,
) -> tuple[torch.Tensor, int]:
    """Summed loss of one micro-batch and the number of terms it holds (divide by the total over a step).

    `rankings[g]` holds group g's tie groups as indices into `rewards` (None when it has only pairs);
    `ranking_index` is the ranked ones' index as `collate` built it (built here when not given).
    Bradley-Terry counts one term per pair; Plackett-Luce one term per ranked group, and groups without a
    ranking fall back to their Bradley-Terry pairs.
    """
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; expected one of {LOSSES}")
    if loss == "kwise":
        total = bradley_terry_terms(rewards, better, worse).sum()
        count = int(better.numel())
    else:
        if ranking_index is None:
            ranking_index = RankingIndex.build([r for r in rankings if r])
        pl = plackett_luce_group_terms(rewards, ranking_index)
        unranked_groups = [g for g, r in enumerate(rankings) if not r]
        total, count = pl.sum(), int(pl.numel())
        if unranked_groups:
            mask = torch.isin(pair_group, torch.as_tensor(unranked_groups, device=pair_group.device))
            total = total + bradley_terry_terms(rewards, better[mask], worse[mask]).sum()
            count += int(mask.sum())
    if center_rewards_coefficient and better.numel():
        # Scaled so that, after dividing by `count`, it is the coefficient times the mean over pairs.
        scale = count / better.numel()
        total = total + center_rewards_coefficient * scale * centering_terms(rewards, better, worse).sum()
    return total, count
