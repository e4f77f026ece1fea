"""Token-budget batching: whole groups, grouped by length, padded per batch.

A batch's cost is what the GPU actually computes: answers x padded length. Keeping groups whole is what
lets every pair of an item be scored from one forward per answer.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .data import Group
from .text import render


@dataclass
class EncodedGroup:
    """A group's answers tokenized with their context, plus its pairs and ranking as answer indices."""

    id: str
    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    pairs: list[tuple[int, int]]
    ranking: list[list[int]] | None
    truncated: int = 0
    margins: list[float] | None = None

    @property
    def max_len(self) -> int:
        """Longest answer sequence of the group."""
        return max(len(x) for x in self.input_ids)

    @property
    def n_tokens(self) -> int:
        """Real (unpadded) tokens in the group."""
        return sum(len(x) for x in self.input_ids)


def encode_group(group: Group, tokenizer: Any, max_length: int) -> EncodedGroup:
    """Render and tokenize every answer of a group once."""
    encoded = [render(tokenizer, group.conversation, text, max_length) for text in group.answer_texts]
    types = [e.token_type_ids for e in encoded]
    return EncodedGroup(
        id=group.id,
        input_ids=[e.input_ids for e in encoded],
        token_type_ids=None if any(t is None for t in types) else types,  # type: ignore[misc]
        pairs=list(group.pairs),
        ranking=group.ranking,
        truncated=sum(e.truncated for e in encoded),
        margins=group.margins,
    )


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple if multiple > 1 else n


def length_order(
    lengths: Sequence[int],
    costs: Sequence[int],
    batch_tokens: int,
    max_groups: int | None,
    shuffle: bool,
    seed: int,
    window: int,
) -> list[int]:
    """Group indices in batching order: sorted by length, or with `shuffle` sorted inside shuffled windows.

    A window holds about `window` batches' worth of groups (by their average `cost`), so batches hold
    similar lengths, little padding, yet epochs differ.
    """
    order = list(range(len(lengths)))
    if not shuffle:
        order.sort(key=lambda j: lengths[j])
        return order
    random.Random(seed).shuffle(order)
    avg_cost = sum(costs) / max(len(costs), 1)
    per_batch = max(1, int(batch_tokens // max(avg_cost, 1)))
    if max_groups:
        per_batch = min(per_batch, max_groups)
    span = max(per_batch * window, 1)
    chunks = [order[i : i + span] for i in range(0, len(order), span)]
    return [i for chunk in chunks for i in sorted(chunk, key=lambda j: lengths[j])]


def plan_batches(
    groups: Sequence[EncodedGroup],
    batch_tokens: int,
    max_groups: int | None = None,
    shuffle: bool = True,
    seed: int = 0,
    pad_multiple: int = 1,
    window: int = 64,
) -> list[list[int]]:
    """Split group indices into batches whose padded size (answers x longest) stays within `batch_tokens`.

    With `shuffle`, groups are shuffled, sorted by length inside windows of about `window` batches (so
    batches hold similar lengths, little padding, yet epochs differ), and the batch order is shuffled.
    A group larger than the budget on its own still gets a batch: no data is dropped.
    """
    costs = [len(g.input_ids) * g.max_len for g in groups]
    order = length_order([g.max_len for g in groups], costs, batch_tokens, max_groups, shuffle, seed, window)
    batches: list[list[int]] = []
    current: list[int] = []
    n_answers = longest = 0
    for j in order:
        g = groups[j]
        new_longest = max(longest, g.max_len)
        new_answers = n_answers + len(g.input_ids)
        too_big = new_answers * _round_up(new_longest, pad_multiple) > batch_tokens
        too_many = max_groups is not None and len(current) >= max_groups
        if current and (too_big or too_many):
            batches.append(current)
            current, n_answers, new_longest, new_answers = [], 0, g.max_len, len(g.input_ids)
        current.append(j)
        longest, n_answers = new_longest, new_answers
    if current:
        batches.append(current)
    if shuffle:
        random.Random(seed + 1).shuffle(batches)
    return batches


def collate(groups: Sequence[EncodedGroup], pad_token_id: int, pad_multiple: int = 1) -> dict[str, Any]:
    """Pad a batch of groups into model tensors plus the pair/ranking indices over the flattened answers.

    Padding is on the right: sequence-classification heads of decoders read the last non-pad token and
    encoders read position 0, so both work.
    """
    seqs = [ids for g in groups for ids in g.input_ids]
    length = _round_up(max(len(s) for s in seqs), pad_multiple)
    input_ids = torch.full((len(seqs), length), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(seqs), length), dtype=torch.long)
    has_types = all(g.token_type_ids is not None for g in groups)
    token_type_ids = torch.zeros((len(seqs), length), dtype=torch.long) if has_types else None
    row = 0
    for g in groups:
        for k, ids in enumerate(g.input_ids):
            input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            attention_mask[row, : len(ids)] = 1
            if token_type_ids is not None:
                types = g.token_type_ids[k]  # type: ignore[index]
                token_type_ids[row, : len(types)] = torch.tensor(types, dtype=torch.long)
            row += 1
    batch: dict[str, Any] = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        **pair_indices(groups, [len(g.input_ids) for g in groups]),
        "n_tokens": int(attention_mask.sum()),
    }
    if token_type_ids is not None:
        batch["token_type_ids"] = token_type_ids
    return batch


def pair_indices(groups: Sequence[Any], group_sizes: Sequence[int]) -> dict[str, Any]:
    """The loss's view of a batch: pairs, rankings and margins as indices into its flattened answers."""
    better, worse, pair_group, margins = [], [], [], []
    rankings: list[list[list[int]] | None] = []
    offset = 0
    for gi, (g, size) in enumerate(zip(groups, group_sizes, strict=True)):
        for b, w in g.pairs:
            better.append(offset + b)
            worse.append(offset + w)
            pair_group.append(gi)
        margins += g.margins if g.margins is not None else [0.0] * len(g.pairs)
        rankings.append([[offset + i for i in level] for level in g.ranking] if g.ranking else None)
        offset += size
    return {
        "better": torch.tensor(better, dtype=torch.long),
        "worse": torch.tensor(worse, dtype=torch.long),
        "pair_group": torch.tensor(pair_group, dtype=torch.long),
        "rankings": rankings,
        "group_sizes": list(group_sizes),
        # Only where some pair states a margin: otherwise the loss has no margin term at all.
        "margins": torch.tensor(margins) if any(g.margins is not None for g in groups) else None,
    }


MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
