"""Rendering (chat template and pair encoding), truncation that keeps the answer, batching and collation."""

from __future__ import annotations

import torch

from training.reward_model.batching import EncodedGroup, collate, encode_group, plan_batches
from training.reward_model.data import Group
from training.reward_model.text import pipeline_input, render

LONG_CONTEXT = [{"role": "user", "content": " ".join(["context"] * 300)}]


def test_pair_encoding_layout_and_token_types(minilm_tokenizer):
    enc = render(minilm_tokenizer, [{"role": "user", "content": "hi there"}], "an answer", 64)
    direct = minilm_tokenizer("user: hi there", "an answer")
    assert enc.input_ids == direct["input_ids"] and enc.token_type_ids == direct["token_type_ids"]
    assert not enc.truncated
    assert pipeline_input(minilm_tokenizer, [{"role": "user", "content": "hi there"}], "an answer") == {
        "text": "user: hi there",
        "text_pair": "an answer",
    }


def test_truncation_cuts_context_from_the_left_and_keeps_the_answer(minilm_tokenizer):
    tok = minilm_tokenizer
    conv = [{"role": "user", "content": "first words " + " ".join(["context"] * 300) + " last words"}]
    enc = render(tok, conv, "the final answer", 32)
    assert enc.truncated and len(enc.input_ids) == 32
    assert enc.input_ids[0] == tok.cls_token_id and enc.input_ids[-1] == tok.sep_token_id
    text = tok.decode(enc.input_ids, skip_special_tokens=True)
    assert text.endswith("last words the final answer") and "first" not in text
    assert enc.token_type_ids[-4:] == [1, 1, 1, 1]


def test_truncation_with_chat_template_keeps_answer_and_closing_tokens(tiny_llama_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    conv = [{"role": "user", "content": "first " + " ".join(["the"] * 200) + " last"}]
    full = render(tok, conv, "correct clear", 10_000)
    enc = render(tok, conv, "correct clear", 20)
    assert enc.truncated and len(enc.input_ids) == 20
    assert enc.input_ids[-8:] == full.input_ids[-8:]  # answer and closing template tokens intact
    assert tok.decode(enc.input_ids).endswith("<| assistant |> correct clear <| end |>")
    # No truncation: exactly the template string tokenized, which is what a pipeline would see.
    assert full.input_ids == tok(pipeline_input(tok, conv, "correct clear"))["input_ids"]


def test_answer_longer_than_budget_is_cut_but_never_dropped(minilm_tokenizer):
    enc = render(minilm_tokenizer, [{"role": "user", "content": "q"}], " ".join(["word"] * 100), 16)
    assert len(enc.input_ids) == 16 and enc.input_ids[-1] == minilm_tokenizer.sep_token_id


def _group(n_answers: int, length: int, gid: str) -> EncodedGroup:
    ids = [[1] * (length - k) for k in range(n_answers)]
    pairs = [(i, j) for i in range(n_answers) for j in range(i + 1, n_answers)]
    return EncodedGroup(gid, ids, None, pairs, [[i] for i in range(n_answers)])


def test_plan_batches_respects_budget_keeps_groups_whole_and_is_seeded():
    groups = [_group(2 + i % 3, 10 + (i * 7) % 50, str(i)) for i in range(100)]
    plan = plan_batches(groups, batch_tokens=400, seed=1)
    flat = sorted(i for b in plan for i in b)
    assert flat == list(range(100))  # every group exactly once
    for batch in plan:
        cost = sum(len(groups[i].input_ids) for i in batch) * max(groups[i].max_len for i in batch)
        assert cost <= 400 or len(batch) == 1
    assert plan == plan_batches(groups, batch_tokens=400, seed=1)
    assert plan != plan_batches(groups, batch_tokens=400, seed=2)
    # An oversize group still gets its own batch.
    big = [_group(4, 200, "big")]
    assert plan_batches(big, batch_tokens=100) == [[0]]
    assert all(len(b) <= 3 for b in plan_batches(groups, 10_000, max_groups=3))


def test_length_grouping_reduces_padding():
    groups = [_group(2, 10 + (i * 37) % 90, str(i)) for i in range(400)]

    def padding(plan):
        real = sum(sum(len(x) for i in b for x in groups[i].input_ids) for b in plan)
        padded = sum(2 * len(b) * max(groups[i].max_len for i in b) for b in plan)
        return 1 - real / padded

    grouped = plan_batches(groups, 800, seed=0)
    random_order = plan_batches(groups, 800, seed=0, window=0)  # window 0: no sorting inside chunks
    assert padding(grouped) < padding(random_order)


def test_collate_shapes_masks_and_pair_offsets(minilm_tokenizer):
    g1 = Group(
        "1",
        [{"role": "user", "content": "q one"}],
        [{"id": "a", "text": "x"}, {"id": "b", "text": "y z"}],
        [(1, 0)],
    )
    g2 = Group(
        "2",
        [{"role": "user", "content": "q"}],
        [{"id": str(i), "text": "w " * i} for i in range(1, 4)],
        [(0, 1), (0, 2)],
        [[0], [1, 2]],
    )
    enc = [encode_group(g, minilm_tokenizer, 64) for g in (g1, g2)]
    batch = collate(enc, minilm_tokenizer.pad_token_id, pad_multiple=8)
    lengths = [len(x) for e in enc for x in e.input_ids]
    assert batch["input_ids"].shape == (5, 16) and max(lengths) > 8  # padded up to a multiple of 8
    assert batch["attention_mask"].sum(1).tolist() == lengths
    assert torch.all(batch["input_ids"][batch["attention_mask"] == 0] == minilm_tokenizer.pad_token_id)
    assert batch["token_type_ids"].shape == (5, 16)
    assert batch["better"].tolist() == [1, 2, 2] and batch["worse"].tolist() == [0, 3, 4]
    assert batch["pair_group"].tolist() == [0, 1, 1]
    assert batch["rankings"] == [None, [[2], [3, 4]]] and batch["group_sizes"] == [2, 3]
    assert batch["n_tokens"] == sum(lengths)


def test_template_written_bos_is_kept_once_and_survives_truncation(tiny_llama_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    tok.bos_token = "<s>"
    tok.chat_template = "<s>" + tok.chat_template
    conv = [{"role": "user", "content": " ".join(["the"] * 100)}]
    enc = render(tok, conv, "correct", 12)
    assert enc.input_ids[0] == tok.bos_token_id and enc.input_ids.count(tok.bos_token_id) == 1
    assert tok.decode(enc.input_ids).endswith("correct <| end |>")
    full = render(tok, conv, "correct", 1000)
    assert tok(pipeline_input(tok, conv, "correct"))["input_ids"] == full.input_ids
