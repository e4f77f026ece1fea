"""Shared-prompt packing for decoder reward models: a group's prompt once, its answers after it, no padding.

One row of a batch holds whole groups back to back, padded only at its end:

    [prompt 1 | answer 1.1 | answer 1.2 | ... | prompt 2 | answer 2.1 | ... | pad]

Every answer attends to its own group's prompt and, causally, to itself; never to another answer or
another group. Its position ids continue from the end of the prompt, and its reward is read at its last
token. In a causal decoder nothing in the prompt depends on what follows it, so each answer's last
hidden state is exactly that of the plain sequence prompt + answer: a group of K answers costs
P + K·A tokens instead of K·(P + A).

The mask is a dense boolean (SDPA) or additive (eager) 4-D mask built on the device from two small
per-token tensors (group slot and part), which transformers passes to the attention as it is. Its cost
grows with a row's length squared, so a row is as long as the batch's longest group (at least
`row_tokens`), not the whole batch: groups of similar length are batched together and fill rows closely.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .batching import collate, encode_group, length_order, pair_indices, plan_batches
from .data import Group
from .text import render_shared

# Decoder families whose sequence classifier reads the reward at the last token through a `score` head
# over `config.base_model_prefix`, and whose attention takes a custom 4-D mask and RoPE position ids.
SHARED_PROMPT_MODEL_TYPES = frozenset({"llama", "qwen2", "qwen3", "mistral", "gemma", "phi3", "olmo2"})
# Attention implementations that take a dense 4-D mask (flash-attention kernels take none).
SHARED_PROMPT_ATTENTION = frozenset({"sdpa", "eager"})


@dataclass
class PackedGroup:
    """A group tokenized as one shared prompt plus each answer's suffix, with its pairs and ranking."""

    id: str
    prompt: list[int]
    suffixes: list[list[int]]
    pairs: list[tuple[int, int]]
    ranking: list[list[int]] | None
    truncated: int = 0
    margins: list[float] | None = None

    @property
    def input_ids(self) -> list[list[int]]:
        """Each answer's full sequence (prompt + suffix): what the plain layout would forward."""
        return [self.prompt + s for s in self.suffixes]

    @property
    def length(self) -> int:
        """Tokens the group takes in a packed row."""
        return len(self.prompt) + sum(len(s) for s in self.suffixes)

    @property
    def n_tokens(self) -> int:
        """Real tokens of the group in the packed layout (the same as `length`: nothing is padded)."""
        return self.length

    @property
    def max_len(self) -> int:
        """Longest answer sequence of the group (prompt + suffix)."""
        return len(self.prompt) + max(len(s) for s in self.suffixes)


def classifier_of(model: Any) -> Any:
    """The transformers sequence classifier inside `model` (itself, or under a PEFT wrapper)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def shared_prompt_supported(model: Any, max_length: int | None = None) -> bool:
    """Whether the model is a decoder classifier the shared-prompt layout computes exactly.

    Sliding-window attention shorter than the sequences would see less than the full mask shows, so such
    models keep the plain layout.
    """
    classifier = classifier_of(model)
    config = classifier.config
    if config.model_type not in SHARED_PROMPT_MODEL_TYPES or not hasattr(classifier, "score"):
        return False
    if getattr(config, "_attn_implementation", "eager") not in SHARED_PROMPT_ATTENTION:
        return False
    window = getattr(config, "sliding_window", None)
    sliding = window and getattr(config, "use_sliding_window", True)
    return not (sliding and (max_length is None or window < max_length))


def encode_packed_group(group: Group, tokenizer: Any, max_length: int) -> PackedGroup:
    """Render a group's answers once (`text.render_shared`) as its shared prompt and one suffix per answer."""
    shared = render_shared(tokenizer, group.conversation, group.answer_texts, max_length)
    return PackedGroup(
        id=group.id,
        prompt=shared.prompt,
        suffixes=shared.suffixes,
        pairs=list(group.pairs),
        ranking=group.ranking,
        truncated=shared.truncated,
        margins=group.margins,
    )


def encode_groups(groups: Sequence[Group], tokenizer: Any, max_length: int, shared_prompt: bool) -> list[Any]:
    """Every group tokenized for the shared-prompt layout (`PackedGroup`) or the plain one."""
    if shared_prompt:
        return [encode_packed_group(g, tokenizer, max_length) for g in groups]
    return [encode_group(g, tokenizer, max_length) for g in groups]


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple if multiple > 1 else n


def pack_rows(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Indices of `lengths` in rows of at most `capacity` (alone when longer): first fit, longest first."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda j: (-lengths[j], j)):
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(capacity - lengths[i])
    return rows


def _row_capacity(lengths: Sequence[int], row_tokens: int, pad_multiple: int) -> int:
    return _round_up(max(max(lengths), row_tokens), pad_multiple)


def packed_cost(lengths: Sequence[int], row_tokens: int, pad_multiple: int = 1) -> int:
    """Tokens a batch of groups of these lengths computes: rows x the longest row (padding included)."""
    capacity = _row_capacity(lengths, row_tokens, pad_multiple)
    rows = pack_rows(lengths, capacity)
    longest = max(sum(lengths[i] for i in row) for row in rows)
    return len(rows) * _round_up(longest, pad_multiple)


def plan_packed_batches(
    groups: Sequence[PackedGroup],
    batch_tokens: int,
    row_tokens: int,
    max_groups: int | None = None,
    shuffle: bool = True,
    seed: int = 0,
    pad_multiple: int = 1,
    window: int = 64,
) -> list[list[int]]:
    """Split group indices into batches whose packed size (rows x row length) stays within `batch_tokens`.

    The same ordering as `batching.plan_batches` (length-sorted windows of a seeded shuffle, batches
    shuffled); a group larger than the budget on its own still gets a batch.
    """
    lengths = [g.length for g in groups]
    order = length_order(lengths, lengths, batch_tokens, max_groups, shuffle, seed, window)
    batches: list[list[int]] = []
    current: list[int] = []
    for j in order:
        candidate = [lengths[i] for i in current] + [lengths[j]]
        too_big = packed_cost(candidate, row_tokens, pad_multiple) > batch_tokens
        too_many = max_groups is not None and len(current) >= max_groups
        if current and (too_big or too_many):
            batches.append(current)
            current = []
        current.append(j)
    if current:
        batches.append(current)
    if shuffle:
        random.Random(seed + 1).shuffle(batches)
    return batches


def collate_packed(
    groups: Sequence[PackedGroup], pad_token_id: int, pad_multiple: int = 1, row_tokens: int = 0
) -> dict[str, Any]:
    """Pack a batch of groups into rows, with what the mask, the positions and the rewards are built from.

    `segment` numbers each group's tokens within its row (-1 for padding), `part` says prompt (0) or
    answer k (k + 1); `reward_rows` / `reward_cols` locate every answer's last token, in group and answer
    order, which is the order the pair indices count in.
    """
    lengths = [g.length for g in groups]
    rows = pack_rows(lengths, _row_capacity(lengths, row_tokens, pad_multiple))
    width = _round_up(max(sum(lengths[i] for i in row) for row in rows), pad_multiple)
    shape = (len(rows), width)
    input_ids = torch.full(shape, pad_token_id, dtype=torch.long)
    position_ids = torch.zeros(shape, dtype=torch.long)
    segment = torch.full(shape, -1, dtype=torch.long)
    part = torch.full(shape, -1, dtype=torch.long)
    last_token: dict[int, list[tuple[int, int]]] = {}
    for r, row in enumerate(rows):
        col = 0
        for slot, gi in enumerate(row):
            g = groups[gi]
            pieces = [(0, g.prompt, 0)] + [(k + 1, s, len(g.prompt)) for k, s in enumerate(g.suffixes)]
            ends = []
            for kind, ids, first_position in pieces:
                n = len(ids)
                input_ids[r, col : col + n] = torch.tensor(ids, dtype=torch.long)
                position_ids[r, col : col + n] = torch.arange(first_position, first_position + n)
                segment[r, col : col + n] = slot
                part[r, col : col + n] = kind
                col += n
                if kind:
                    ends.append((r, col - 1))
            last_token[gi] = ends
    answer_ends = [end for gi in range(len(groups)) for end in last_token[gi]]
    return {
        "input_ids": input_ids,
        "position_ids": position_ids,
        "segment": segment,
        "part": part,
        "reward_rows": torch.tensor([r for r, _ in answer_ends], dtype=torch.long),
        "reward_cols": torch.tensor([c for _, c in answer_ends], dtype=torch.long),
        **pair_indices(groups, [len(g.suffixes) for g in groups]),
        "n_tokens": sum(lengths),
    }


def packed_attention_mask(
    segment: torch.Tensor, part: torch.Tensor, additive_dtype: Any = None
) -> torch.Tensor:
    """The (rows, 1, L, L) mask: a token sees earlier tokens of its group's prompt and of its own part.

    Padding (segment -1, part -1) sees earlier padding only, so no query row is empty (an all-masked
    row would turn SDPA's softmax into NaN, and NaN reaches the gradients even where unused). Boolean
    (True = attend) by default; with `additive_dtype`, 0 where allowed and that dtype's minimum elsewhere,
    as eager attention adds it to the scores.
    """
    width = segment.shape[1]
    index = torch.arange(width, device=segment.device)
    causal = index[:, None] >= index[None, :]
    same_group = segment[:, :, None] == segment[:, None, :]
    visible = (part[:, None, :] == 0) | (part[:, :, None] == part[:, None, :])
    allowed = (same_group & visible & causal)[:, None]
    if additive_dtype is None:
        return allowed
    mask = torch.zeros(allowed.shape, dtype=additive_dtype, device=segment.device)
    return mask.masked_fill(~allowed, torch.finfo(additive_dtype).min)


class RewardForward(torch.nn.Module):
    """One reward per answer of a collated batch, plain or packed: what the trainer runs (and DDP wraps).

    Plain batches go through the classifier as they are; packed ones through its base model with the
    shared-prompt mask and positions, then its `score` head at every answer's last token.
    """

    def __init__(self, model: Any):
        super().__init__()
        self.model = model

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        segment: torch.Tensor | None = None,
        part: torch.Tensor | None = None,
        reward_rows: torch.Tensor | None = None,
        reward_cols: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Rewards of the batch's answers, in group and answer order."""
        if segment is None:
            inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_type_ids is not None:
                inputs["token_type_ids"] = token_type_ids
            return self.model(**inputs).logits[:, 0]
        classifier = classifier_of(self.model)
        base = getattr(classifier, classifier.base_model_prefix)
        eager = classifier.config._attn_implementation == "eager"
        dtype = base.get_input_embeddings().weight.dtype
        if eager and torch.is_autocast_enabled(input_ids.device.type):
            dtype = torch.get_autocast_dtype(input_ids.device.type)
        mask = packed_attention_mask(segment, part, dtype if eager else None)
        hidden = base(
            input_ids=input_ids, attention_mask=mask, position_ids=position_ids, use_cache=False
        ).last_hidden_state
        return classifier.score(hidden[reward_rows, reward_cols])[:, 0]


# What a collated batch hands `RewardForward` (the rest is for the loss and the counters).
FORWARD_INPUTS = (
    "input_ids",
    "attention_mask",
    "token_type_ids",
    "position_ids",
    "segment",
    "part",
    "reward_rows",
    "reward_cols",
)


def batch_rewards(model: Any, batch: dict[str, Any], device: torch.device) -> torch.Tensor:
    """Rewards of a collated batch's answers from a `RewardForward` (wrapped or not) or a classifier."""
    inputs = {k: batch[k].to(device, non_blocking=True) for k in FORWARD_INPUTS if batch.get(k) is not None}
    inner = getattr(model, "module", model)  # DDP / compiled wrappers keep the module they wrap here
    inner = getattr(inner, "_orig_mod", inner)
    if not isinstance(inner, RewardForward):
        model = RewardForward(model)
    return model(**inputs)


def plan_any_batches(
    groups: Sequence[Any],
    batch_tokens: int,
    row_tokens: int,
    max_groups: int | None = None,
    shuffle: bool = True,
    seed: int = 0,
    pad_multiple: int = 1,
) -> list[list[int]]:
    """`plan_packed_batches` for packed groups, `batching.plan_batches` for plain ones."""
    if groups and isinstance(groups[0], PackedGroup):
        return plan_packed_batches(groups, batch_tokens, row_tokens, max_groups, shuffle, seed, pad_multiple)
    return plan_batches(groups, batch_tokens, max_groups, shuffle, seed, pad_multiple)


def collate_any(
    groups: Sequence[Any], pad_token_id: int, pad_multiple: int = 1, row_tokens: int = 0
) -> dict[str, Any]:
    """`collate_packed` for packed groups, `batching.collate` for plain ones."""
    if groups and isinstance(groups[0], PackedGroup):
        return collate_packed(groups, pad_token_id, pad_multiple, row_tokens)
    return collate(groups, pad_token_id, pad_multiple)
