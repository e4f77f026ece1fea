"""The one place that turns a conversation and an answer into model input.

Training, evaluation, scoring and the `pipeline` check all go through `render`, so a saved model sees
at inference exactly the layout it was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from preferences.conversations import Message


@dataclass(frozen=True)
class Encoded:
    """Token ids of one (conversation, answer) input; `truncated` says the context or answer was cut."""

    input_ids: list[int]
    token_type_ids: list[int] | None
    truncated: bool


def uses_chat_template(tokenizer: Any) -> bool:
    """True when the tokenizer carries a chat template, which then defines the layout."""
    return bool(getattr(tokenizer, "chat_template", None))


def context_text(conversation: list[Message], tokenizer: Any) -> str:
    """Plain role-tagged rendering of the conversation, for tokenizers without a chat template."""
    text = "\n".join(f"{m['role']}: {m['content']}" for m in conversation)
    # Pair encodings of decoder tokenizers add no separator, so mark where the answer starts.
    if tokenizer.num_special_tokens_to_add(pair=True) == 0:
        text += "\nassistant:\n"
    return text


def pipeline_input(tokenizer: Any, conversation: list[Message], answer: str) -> str | dict[str, str]:
    """What to hand `transformers.pipeline("text-classification")` to get the same tokens as `render`."""
    if uses_chat_template(tokenizer):
        text = _chat_string(tokenizer, conversation, answer)
        bos = getattr(tokenizer, "bos_token", None)
        # `render` keeps a template-written BOS and adds none; the pipeline's tokenizer adds its own, so
        # hand it the text without the template's copy.
        if bos and text.startswith(bos) and tokenizer("")["input_ids"][:1] == [tokenizer.bos_token_id]:
            text = text[len(bos) :]
        return text
    return {"text": context_text(conversation, tokenizer), "text_pair": answer}


def _chat_string(tokenizer: Any, conversation: list[Message], answer: str) -> str:
    messages = [*conversation, {"role": "assistant", "content": answer}]
    return tokenizer.apply_chat_template(messages, tokenize=False)


def render(tokenizer: Any, conversation: list[Message], answer: str, max_length: int) -> Encoded:
    """Tokenize conversation + answer; over `max_length`, cut the context from the left and keep the answer.

    Leading special tokens ([CLS] / BOS) always stay, since the classification head may read them. Only
    when the answer alone does not fit is the answer cut too, from its end, keeping the trailing special
    and template tokens.
    """
    ids, types, regions = _encode(tokenizer, conversation, answer)
    keep = _truncate(regions, max_length)
    out_ids = [ids[i] for i in keep]
    out_types = [types[i] for i in keep] if types is not None else None
    return Encoded(out_ids, out_types, len(keep) < len(ids))


@dataclass(frozen=True)
class SharedEncoded:
    """A group's answers as one shared prompt plus a suffix each: answer k's sequence is prompt + suffixes[k].

    `truncated` counts the answers whose sequence is shorter than their untruncated rendering.
    """

    prompt: list[int]
    suffixes: list[list[int]]
    truncated: int


def render_shared(
    tokenizer: Any, conversation: list[Message], answers: list[str], max_length: int
) -> SharedEncoded:
    """Render every answer as `render` does, then split off the tokens all of them begin with as the prompt.

    Without truncation, prompt + suffixes[k] is exactly `render`'s sequence for answer k. Over
    `max_length`, the prompt is cut from the left (after the leading specials) until the longest answer
    fits, so that every answer is read against the same context: the longest answer gets exactly `render`'s
    sequence, shorter ones the same context rather than a longer one of their own. When not even the
    longest answer fits beside the leading specials, nothing is shared: each suffix is `render`'s
    sequence and the prompt is empty.
    """
    encoded = [_encode(tokenizer, conversation, answer) for answer in answers]
    sequences = [ids for ids, _, _ in encoded]
    if not sequences:
        return SharedEncoded([], [], 0)
    # Every suffix keeps at least its last token: that is where the reward is read.
    shared = min(_common_prefix_length(sequences), min(len(s) for s in sequences) - 1)
    longest = max(len(s) for s in sequences)
    over = longest - max_length
    if over <= 0:
        return SharedEncoded(sequences[0][:shared], [s[shared:] for s in sequences], 0)
    # The context is cut only where every answer has context, inside the shared prompt, after the head.
    head = max(len(regions[0]) for _, _, regions in encoded)
    context_end = min(len(regions[0]) + len(regions[1]) for _, _, regions in encoded)
    if head + over <= min(shared, context_end):
        prompt = sequences[0][:head] + sequences[0][head + over : shared]
        return SharedEncoded(prompt, [s[shared:] for s in sequences], len(sequences))
    plain = [render(tokenizer, conversation, answer, max_length) for answer in answers]
    return SharedEncoded([], [e.input_ids for e in plain], sum(e.truncated for e in plain))


def _common_prefix_length(sequences: list[list[int]]) -> int:
    n = 0
    for column in zip(*sequences, strict=False):
        if any(token != column[0] for token in column):
            break
        n += 1
    return n


def _encode(
    tokenizer: Any, conversation: list[Message], answer: str
) -> tuple[list[int], list[int] | None, Regions]:
    """Untruncated token ids of conversation + answer, their token types and the regions they split into."""
    if uses_chat_template(tokenizer):
        text = _chat_string(tokenizer, conversation, answer)
        bos = getattr(tokenizer, "bos_token", None)
        # A template that already writes BOS must not get a second one from the tokenizer.
        add_special = not (bos and text.startswith(bos))
        enc = tokenizer(text, add_special_tokens=add_special, return_offsets_mapping=True)
        start = text.rfind(answer.strip()) if answer.strip() else len(text)
        end = start + len(answer.strip()) if start >= 0 else len(text)
        if start < 0:  # the template rewrote the answer: keep the end of the sequence
            start = end = len(text)
        special = set(getattr(tokenizer, "all_special_ids", []) or [])
        regions = _regions_by_offsets(enc["offset_mapping"], start, end, enc["input_ids"], special)
    else:
        enc = tokenizer(
            context_text(conversation, tokenizer),
            answer,
            add_special_tokens=True,
            return_offsets_mapping=True,
        )
        regions = _regions_by_sequence(enc.sequence_ids(0), enc["input_ids"])
    types = list(enc["token_type_ids"]) if "token_type_ids" in enc else None
    return list(enc["input_ids"]), types, regions


# A sequence is split into regions: head (leading specials), context, answer, tail (what follows the
# answer: closing template tokens, [SEP], EOS). Each region is a list of token positions.
Regions = tuple[list[int], list[int], list[int], list[int]]


def _regions_by_offsets(
    offsets: list[tuple[int, int]], ans_start: int, ans_end: int, ids: list[int], special: set[int]
) -> Regions:
    head: list[int] = []
    context: list[int] = []
    answer: list[int] = []
    tail: list[int] = []
    zero = [s == e == 0 for s, e in offsets]
    last_content = max((i for i, z in enumerate(zero) if not z), default=-1)
    for i, (s, e) in enumerate(offsets):
        # Leading specials: added by the tokenizer ([CLS]) or written by the template (a BOS in the text).
        if (zero[i] or ids[i] in special) and i == len(head):
            head.append(i)
        elif zero[i] and i > last_content:  # trailing specials ([SEP], EOS)
            tail.append(i)
        elif e <= ans_start:
            context.append(i)
        elif s < ans_end:
            answer.append(i)
        else:
            tail.append(i)
    return head, context, answer, tail


def _regions_by_sequence(sequence_ids: list[int | None], ids: list[int]) -> Regions:
    head, context, answer, tail = [], [], [], []
    seen_context = seen_answer = False
    for i, s in enumerate(sequence_ids):
        if s == 0:
            seen_context = True
            context.append(i)
        elif s == 1:
            seen_answer = True
            answer.append(i)
        elif not seen_context and not seen_answer:
            head.append(i)
        elif seen_answer:
            tail.append(i)
        else:  # separator between context and answer: stays with the answer so it is never cut
            answer.append(i)
    return head, context, answer, tail


def _truncate(regions: Regions, max_length: int) -> list[int]:
    head, context, answer, tail = regions
    total = len(head) + len(context) + len(answer) + len(tail)
    if total <= max_length:
        return head + context + answer + tail
    fixed = len(head) + len(tail)
    room_for_answer = max(max_length - fixed, 1)
    if len(answer) >= room_for_answer:
        # No room for any context: the answer itself is cut from its end (rare; counted by the caller).
        return head + answer[:room_for_answer] + tail
    room_for_context = max_length - fixed - len(answer)
    kept_context = context[len(context) - room_for_context :] if room_for_context > 0 else []
    return head + kept_context + answer + tail
