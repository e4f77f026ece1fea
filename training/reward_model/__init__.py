"""Reward-model training engine: K-wise ranking losses over whole answer groups, no Django required.

Public API:

- data: `Group`, `read_groups`, `groups_from_records`, `split_groups`, `pairs_from_ranking`
- text: `render` (the one conversation+answer -> tokens function), `render_shared` (a group's answers
  as one shared prompt + a suffix each, split from `render`'s sequences), `pipeline_input`
- packing: `shared_prompt_supported`, `encode_packed_group`, `collate_packed`, `RewardForward` (decoders'
  shared-prompt layout: each group's prompt forwarded once)
- loss: `kwise_bradley_terry_loss`, `plackett_luce_group_terms`, `batch_loss_sum`
- training: `TrainConfig`, `train`
- evaluation: `evaluation_figures`, `read_evaluation_groups`, `suites_read` (what `evaluate` prints)
- scoring: `RewardScorer`, `score_texts`
"""

from .data import Group, ReadReport, groups_from_records, pairs_from_ranking, read_groups, split_groups
from .evaluation import evaluation_figures, read_evaluation_groups, suites_read
from .loss import batch_loss_sum, kwise_bradley_terry_loss, plackett_luce_group_terms
from .metrics import ranking_metrics
from .modeling import RewardScorer, default_base_model, load_base, read_metadata, score_texts
from .packing import RewardForward, collate_packed, encode_packed_group, shared_prompt_supported
from .text import pipeline_input, render, render_shared
from .trainer import TrainConfig, train

__all__ = [
    "Group",
    "ReadReport",
    "RewardForward",
    "RewardScorer",
    "TrainConfig",
    "batch_loss_sum",
    "collate_packed",
    "default_base_model",
    "encode_packed_group",
    "evaluation_figures",
    "groups_from_records",
    "kwise_bradley_terry_loss",
    "load_base",
    "pairs_from_ranking",
    "pipeline_input",
    "plackett_luce_group_terms",
    "ranking_metrics",
    "read_evaluation_groups",
    "read_groups",
    "read_metadata",
    "render",
    "render_shared",
    "score_texts",
    "shared_prompt_supported",
    "split_groups",
    "suites_read",
    "train",
]
