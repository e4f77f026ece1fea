"""The shared-prompt layout: a group's prompt once, its answers after it; rewards equal the plain forward."""

from __future__ import annotations

import random

import pytest
import torch

from training.reward_model.batching import collate, encode_group
from training.reward_model.data import Group
from training.reward_model.modeling import load_base, score_encoded
from training.reward_model.packing import (
    PackedGroup,
    batch_rewards,
    collate_packed,
    encode_packed_group,
    pack_rows,
    packed_attention_mask,
    packed_cost,
    plan_packed_batches,
    shared_prompt_supported,
)
from training.reward_model.synthetic import FILLER, GOOD
from training.reward_model.text import render, render_shared


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(FILLER + list(GOOD)) for _ in range(n))


def _group(rng: random.Random, k: int, gid: str, prompt_words: int = 30) -> Group:
    """A multi-turn conversation and K answers, two of them tied (the same text, as a tie may well be)."""
    conversation = [
        {"role": "system", "content": _words(rng, 5)},
        {"role": "user", "content": _words(rng, prompt_words)},
        {"role": "assistant", "content": _words(rng, 6)},
        {"role": "user", "content": _words(rng, 8) + " ?"},
    ]
    answers = [_words(rng, rng.randint(1, 14)) for _ in range(k)]
    answers[-1] = answers[0]  # tied with the first
    ranking = [[0, k - 1], *[[i] for i in range(1, k - 1)]]
    pairs = [
        (b, w) for a, level in enumerate(ranking) for b in level for lower in ranking[a + 1 :] for w in lower
    ]
    return Group(
        gid, conversation, [{"id": str(i), "text": t} for i, t in enumerate(answers)], pairs, ranking
    )


def _model(path: str, attn: str):
    model, tokenizer = load_base(path, attn_implementation=attn)
    return model.eval(), tokenizer


def _plain_rewards(model, sequences: list[list[int]]) -> torch.Tensor:
    """Each sequence forwarded alone, as the plain path (or a pipeline) would."""
    with torch.no_grad():
        return torch.stack([model(input_ids=torch.tensor([s])).logits[0, 0] for s in sequences])


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("max_length", [10_000, 60])
def test_shared_prompt_rewards_equal_the_plain_forward_for_k_2_to_6(tiny_qwen2_dir, attn, max_length):
    model, tokenizer = _model(tiny_qwen2_dir, attn)
    assert shared_prompt_supported(model, max_length)
    rng = random.Random(max_length)
    groups = [_group(rng, k, f"g{k}") for k in range(2, 7)]
    packed = [encode_packed_group(g, tokenizer, max_length) for g in groups]
    batch = collate_packed(packed, tokenizer.pad_token_id)
    with torch.no_grad():
        shared = batch_rewards(model, batch, torch.device("cpu"))
    sequences = [s for p in packed for s in p.input_ids]
    torch.testing.assert_close(shared, _plain_rewards(model, sequences), rtol=1e-5, atol=1e-5)
    # Ties: the same answer text scores the same reward.
    offset = 0
    for p in packed:
        assert shared[offset] == pytest.approx(float(shared[offset + len(p.suffixes) - 1]), abs=1e-5)
        offset += len(p.suffixes)
    plain = [encode_group(g, tokenizer, max_length) for g in groups]
    if max_length > 1000:  # nothing cut: every answer's sequence is exactly the plain rendering
        assert sequences == [s for e in plain for s in e.input_ids]
        assert all(not p.truncated for p in packed)
    else:  # cut: the prompt shrank to fit the longest answer, which keeps exactly `render`'s sequence
        assert all(p.truncated == len(g.answers) for g, p in zip(groups, packed, strict=True))
        for g, p in zip(groups, packed, strict=True):
            assert p.prompt and all(len(s) <= max_length for s in p.input_ids)
            longest = max(range(len(g.answers)), key=lambda i: len(p.suffixes[i]))
            assert (
                p.input_ids[longest]
                == render(tokenizer, g.conversation, g.answer_texts[longest], 60).input_ids
            )


def test_the_llama_decoder_gives_the_same_rewards_packed_and_plain(tiny_llama_dir):
    model, tokenizer = _model(tiny_llama_dir, "sdpa")
    groups = [_group(random.Random(3), k, str(k), prompt_words=20) for k in (2, 4)]
    packed = [encode_packed_group(g, tokenizer, 512) for g in groups]
    plain = [encode_group(g, tokenizer, 512) for g in groups]
    shared = [r for rewards in score_encoded(model, packed, tokenizer.pad_token_id) for r in rewards]
    alone = [r for rewards in score_encoded(model, plain, tokenizer.pad_token_id) for r in rewards]
    assert shared == pytest.approx(alone, abs=1e-5)


def test_changing_one_answer_leaves_every_other_reward_unchanged(tiny_qwen2_dir):
    model, tokenizer = _model(tiny_qwen2_dir, "sdpa")
    rng = random.Random(7)
    groups = [_group(rng, 4, "a"), _group(rng, 3, "b")]
    before = [encode_packed_group(g, tokenizer, 10_000) for g in groups]
    changed = [encode_packed_group(g, tokenizer, 10_000) for g in groups]
    changed[0].suffixes[1] = (
        changed[0].suffixes[1][:-1]
        + [tokenizer.convert_tokens_to_ids("correct")] * 5
        + [changed[0].suffixes[1][-1]]
    )
    # Both groups in one row, so the second group follows the changed answer in the same sequence.
    rewards = []
    for packed in (before, changed):
        batch = collate_packed(packed, tokenizer.pad_token_id, row_tokens=10_000)
        assert batch["input_ids"].shape[0] == 1
        with torch.no_grad():
            rewards.append(batch_rewards(model, batch, torch.device("cpu")))
    unchanged = [i for i in range(7) if i != 1]
    torch.testing.assert_close(rewards[0][unchanged], rewards[1][unchanged], rtol=0, atol=1e-6)
    assert abs(float(rewards[0][1] - rewards[1][1])) > 1e-4


def test_render_shared_splits_off_the_common_prompt_and_falls_back_when_nothing_fits(tiny_qwen2_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_qwen2_dir)
    conv = [{"role": "user", "content": "first " + " ".join(["the"] * 50) + " last"}]
    answers = ["correct clear", "wrong", "correct clear honest and precise"]
    full = render_shared(tok, conv, answers, 10_000)
    assert [full.prompt + s for s in full.suffixes] == [
        render(tok, conv, a, 10_000).input_ids for a in answers
    ]
    assert tok.decode(full.prompt).endswith("<|im_start|>assistant\n") and not full.truncated
    cut = render_shared(tok, conv, answers, 30)
    assert all(len(cut.prompt) + len(s) <= 30 for s in cut.suffixes) and cut.truncated == 3
    # The prompt lost tokens from its start only; the answers are whole.
    assert cut.suffixes == full.suffixes and cut.prompt == full.prompt[len(full.prompt) - len(cut.prompt) :]
    # Not even the longest answer fits beside the leading specials: each answer is `render`'s own sequence.
    tiny = render_shared(tok, conv, answers, 4)
    assert tiny.prompt == [] and tiny.suffixes == [render(tok, conv, a, 4).input_ids for a in answers]
    # Identical answers still keep one token each, where their rewards are read.
    same = render_shared(tok, conv, ["correct", "correct"], 10_000)
    assert [len(s) for s in same.suffixes] == [1, 1]


def _packed(lengths: list[tuple[int, list[int]]]) -> list[PackedGroup]:
    return [
        PackedGroup(str(i), [7] * p, [[8] * a for a in answers], [(0, 1)], None)
        for i, (p, answers) in enumerate(lengths)
    ]


def test_collate_packs_groups_without_padding_between_them_with_positions_from_the_prompt():
    groups = _packed([(5, [2, 3]), (3, [1, 1, 2]), (9, [4, 4])])
    batch = collate_packed(groups, pad_token_id=0, row_tokens=20)
    # Capacity 20: the 17-token group alone, the 10- and 7-token groups together; padding only at row ends.
    assert batch["input_ids"].shape == (2, 17) and batch["n_tokens"] == 10 + 7 + 17
    assert (batch["input_ids"] == 0).sum() == 2 * 17 - 34
    row = batch["position_ids"][1].tolist()
    assert row[:10] == [0, 1, 2, 3, 4, 5, 6, 5, 6, 7] and row[10:17] == [0, 1, 2, 3, 3, 3, 4]
    # Rewards are read at every answer's last token, in group then answer order.
    ends = list(zip(batch["reward_rows"].tolist(), batch["reward_cols"].tolist(), strict=True))
    assert ends == [(1, 6), (1, 9), (1, 13), (1, 14), (1, 16), (0, 12), (0, 16)]
    assert batch["better"].tolist() == [0, 2, 5] and batch["group_sizes"] == [2, 3, 2]


def test_mask_lets_an_answer_see_its_prompt_and_itself_only():
    groups = _packed([(2, [2, 1]), (1, [1])])
    together = collate_packed(groups, pad_token_id=0, row_tokens=10)
    mask = packed_attention_mask(together["segment"], together["part"])[0, 0].int()
    # One row: prompt p p, answer a a, answer b | prompt q, answer c
    assert mask.tolist() == [
        [1, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0],
        [1, 1, 1, 1, 0, 0, 0],
        [1, 1, 0, 0, 1, 0, 0],
        [0, 0, 0, 0, 0, 1, 0],
        [0, 0, 0, 0, 0, 1, 1],
    ]
    additive = packed_attention_mask(together["segment"], together["part"], torch.float32)
    assert torch.equal(additive[0, 0] == 0, mask.bool())
    # Apart, the short group's row is padded at its end; padding sees only padding (never an empty row).
    apart = collate_packed(groups, pad_token_id=0, row_tokens=0)
    short = packed_attention_mask(apart["segment"], apart["part"])[1, 0].int()
    assert short.tolist() == [
        [1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [0, 0, 1, 0, 0],
        [0, 0, 1, 1, 0],
        [0, 0, 1, 1, 1],
    ]


def test_packed_plan_respects_the_budget_and_keeps_every_group_once():
    rng = random.Random(0)
    groups = _packed(
        [(rng.randint(5, 60), [rng.randint(1, 9) for _ in range(rng.randint(2, 5))]) for _ in range(80)]
    )
    plan = plan_packed_batches(groups, batch_tokens=300, row_tokens=64, seed=1)
    assert sorted(i for b in plan for i in b) == list(range(80))
    for b in plan:
        assert packed_cost([groups[i].length for i in b], 64) <= 300 or len(b) == 1
    assert plan == plan_packed_batches(groups, batch_tokens=300, row_tokens=64, seed=1)
    assert pack_rows([5, 5, 5], 10) == [[0, 1], [2]]


def test_encoders_and_flash_attention_keep_the_plain_layout(tiny_bert_dir, tiny_qwen2_dir):
    bert, _ = load_base(tiny_bert_dir)
    qwen, _ = load_base(tiny_qwen2_dir)
    assert not shared_prompt_supported(bert)
    qwen.config._attn_implementation = "flash_attention_2"
    assert not shared_prompt_supported(qwen)
    qwen.config._attn_implementation = "sdpa"
    qwen.config.use_sliding_window, qwen.config.sliding_window = True, 64
    assert not shared_prompt_supported(qwen, 128) and shared_prompt_supported(qwen, 64)


def test_plain_collate_still_serves_encoders(minilm_tokenizer):
    g = Group(
        "1",
        [{"role": "user", "content": "q"}],
        [{"id": "a", "text": "x"}, {"id": "b", "text": "y"}],
        [(0, 1)],
    )
    batch = collate([encode_group(g, minilm_tokenizer, 32)], minilm_tokenizer.pad_token_id)
    assert "segment" not in batch and batch["margins"] is None
