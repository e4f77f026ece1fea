"""Reward-model training engine: K-wise ranking losses over whole answer groups, no Django required.

Public API:

- data: `Group`, `read_groups`, `groups_from_records`, `split_groups`, `pairs_from_ranking`
- text: `render` (the one conversation+answer -> tokens function), `pipeline_input`
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
from .text import pipeline_input, render
from .trainer import TrainConfig, train

__all__ = [
    "Group",
    "ReadReport",
    "RewardScorer",
    "TrainConfig",
    "batch_loss_sum",
    "default_base_model",
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
    "score_texts",
    "split_groups",
    "suites_read",
    "train",
]
