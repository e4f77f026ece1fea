"""The training loop: Accelerate for devices, mixed precision and multi-GPU / multi-node; our own batches.

Accelerate (rather than `transformers.Trainer`) because batches here are variable-sized token-budget
batches of whole groups, and gradient accumulation must divide by the number of pairs in the whole step,
not average per-micro-batch means. The same entry point runs under `torchrun` and `accelerate launch`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import math
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .batching import EncodedGroup
from .data import Group
from .evaluation import Suite, final_evaluation
from .loss import LOSSES, batch_loss_sum
from .metrics import ranking_metrics
from .modeling import (
    configure_reward_head,
    disable_dropout,
    load_base,
    read_metadata,
    save_reward_model,
    score_encoded,
)
from .packing import (
    SHARED_PROMPT_MODEL_TYPES,
    RewardForward,
    batch_rewards,
    collate_any,
    encode_groups,
    plan_any_batches,
    shared_prompt_supported,
)
from .text import uses_chat_template

log = logging.getLogger(__name__)

EventSink = Callable[[dict[str, Any]], None]
ENGINE_VERSION = "1"


class TrainingDiverged(RuntimeError):
    """The loss or the gradient norm stopped being a finite number: every step after it would be noise."""


# What `_Tally.nonfinite_kind` holds, 0 while every step was finite.
_NONFINITE = {
    1: "the loss became NaN",
    2: "the loss became infinite",
    3: "the gradient norm became NaN or infinite",
}


@dataclass
class TrainConfig:
    """Every knob of a training run; saved verbatim in the model metadata."""

    base_model: str | None = None
    output_dir: str | None = None
    epochs: int = 1
    lr: float = 5e-5
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    max_length: int = 512
    batch_tokens: int = 8192
    max_groups_per_batch: int | None = None
    grad_accum: int = 1
    loss: str = "kwise"
    center_rewards_coefficient: float | None = None
    seed: int = 42
    bf16: bool | None = None  # None: on when the GPU supports it
    tf32: bool = True
    gradient_checkpointing: bool = False
    torch_compile: bool = False
    attn_implementation: str | None = None
    max_grad_norm: float | None = 1.0
    disable_dropout: bool = True
    log_every: int = 10
    eval_every_epoch: bool = True
    max_steps: int | None = None
    eval_batch_tokens: int = 16384  # inference batches: a huge training budget must not blow up eval
    show_progress_bar: bool = True
    # Decoders: each group's prompt forwarded once, its answers after it (`packing`). None: wherever the
    # model computes it exactly (`packing.shared_prompt_supported`); True insists, False never.
    shared_prompt: bool | None = None
    # Shortest packed row in tokens (default `max_length`); a row is at least the batch's longest group.
    row_tokens: int | None = None
    # LoRA adapters instead of training every weight (0: off); the reward head is trained in full.
    lora_r: int = 0
    lora_alpha: float | None = None  # default 2 * lora_r
    lora_dropout: float = 0.0
    lora_target_modules: list[str] | None = None  # default: every linear layer ("all-linear")
    # A warm start: a reward model directory (e.g. the project's active version) to continue training.
    init_from: str | None = None


def _peak_memory_mb(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    # ru_maxrss is KiB on Linux: the whole process's peak resident set.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process_peak_rss"


def _significant(x: float) -> float:
    """Six significant digits: gradient norms of small models are far below 1e-3."""
    return float(f"{x:.6g}")


def _step_term_count(batch: dict[str, Any], loss: str) -> int:
    """Number of loss terms in a micro-batch, known before the forward (see `batch_loss_sum`)."""
    if loss == "kwise":
        return int(batch["better"].numel())
    ranked = sum(1 for r in batch["rankings"] if r)
    unranked = [g for g, r in enumerate(batch["rankings"]) if not r]
    if not unranked:
        return ranked
    return ranked + int(torch.isin(batch["pair_group"], torch.tensor(unranked)).sum())


def _set_activation_checkpointing(model: Any, on: bool) -> None:
    """Gradient checkpointing under transformers 5's name, falling back to 4.x's."""
    if hasattr(model, "activation_checkpointing_enable"):
        if on:
            model.activation_checkpointing_enable({"use_reentrant": False})
        else:
            model.activation_checkpointing_disable()
    elif on:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_disable()


def _grad_norm(accelerator: Any, model: torch.nn.Module, max_grad_norm: float | None) -> torch.Tensor | None:
    """The step's total gradient norm before clipping; clips the gradients to `max_grad_norm` when set."""
    from accelerate.utils import DistributedType

    # Without a bound only the norm is needed: clipping to an infinite one would still rescale every gradient
    # by 1. Under DDP the gradients are already all-reduced, so the local norm is the global one; sharded
    # backends hold a part of each gradient (or clip inside their engine) and keep Accelerate's own path.
    sharded = {
        DistributedType.FSDP,
        DistributedType.DEEPSPEED,
        DistributedType.XLA,
        DistributedType.MEGATRON_LM,
    }
    if max_grad_norm or accelerator.distributed_type in sharded:
        return accelerator.clip_grad_norm_(model.parameters(), max_grad_norm or math.inf)
    accelerator.unscale_gradients()  # fp16's loss scale; a no-op for bf16 and fp32
    return torch.nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None])


def only_paired_answers(group: Group) -> Group:
    """The group without answers that are in no pair: forwarding them would cost time and teach nothing."""
    used = sorted({i for pair in group.pairs for i in pair})
    if len(used) == len(group.answers):
        return group
    new_index = {old: new for new, old in enumerate(used)}
    ranking = None
    if group.ranking:
        ranking = [[new_index[i] for i in level if i in new_index] for level in group.ranking]
        ranking = [level for level in ranking if level]
    return Group(
        group.id,
        group.conversation,
        [group.answers[i] for i in used],
        [(new_index[b], new_index[w]) for b, w in group.pairs],
        ranking,
        group.margins,
    )


def _shard(batches: list[list[int]], rank: int, world: int) -> list[list[int]]:
    """This rank's batches; short ranks repeat early batches so every rank takes the same number of steps."""
    if world == 1:
        return batches
    per_rank = math.ceil(len(batches) / world)
    padded = batches + batches[: per_rank * world - len(batches)]
    return padded[rank::world]


def epoch_plan(
    encoded: Sequence[EncodedGroup], config: TrainConfig, epoch: int, pad_multiple: int = 1
) -> list[list[int]]:
    """One epoch's micro-batches of group indices (before sharding): a fresh shuffle per epoch and seed."""
    return plan_any_batches(
        encoded,
        config.batch_tokens,
        _row_tokens(config),
        config.max_groups_per_batch,
        shuffle=True,
        seed=config.seed * 1000 + epoch,
        pad_multiple=pad_multiple,
    )


def _row_tokens(config: TrainConfig) -> int:
    return config.row_tokens if config.row_tokens is not None else config.max_length


def group_scores(
    model: Any, encoded: Sequence[EncodedGroup], pad_token_id: int, batch_tokens: int, accelerator: Any = None
) -> list[list[float]]:
    """Every answer's reward, group by group in order (sharded and gathered when distributed)."""
    device = next(model.parameters()).device
    dtype = torch.bfloat16 if accelerator is not None and accelerator.mixed_precision == "bf16" else None
    if accelerator is None or accelerator.num_processes == 1:
        return score_encoded(model, encoded, pad_token_id, batch_tokens, device, dtype)
    from accelerate.utils import gather_object

    mine = list(range(accelerator.process_index, len(encoded), accelerator.num_processes))
    part = score_encoded(model, [encoded[i] for i in mine], pad_token_id, batch_tokens, device, dtype)
    by_index = dict(gather_object([(i, s) for i, s in zip(mine, part, strict=True)]))
    return [by_index[i] for i in range(len(encoded))]


def evaluate_groups(
    model: Any, encoded: Sequence[EncodedGroup], pad_token_id: int, batch_tokens: int, accelerator: Any = None
) -> dict[str, Any]:
    """Held-out metrics of `model` on already encoded groups (sharded over processes when distributed)."""
    scores = group_scores(model, encoded, pad_token_id, batch_tokens, accelerator)
    return ranking_metrics([g.pairs for g in encoded], [g.ranking for g in encoded], scores)


def train(
    config: TrainConfig,
    train_groups: Sequence[Group],
    eval_groups: Sequence[Group] = (),
    on_event: EventSink | None = None,
    extra_metadata: dict[str, Any] | None = None,
    model: Any = None,
    tokenizer: Any = None,
    suites: Sequence[Suite] = (),
) -> dict[str, Any]:
    """Train a reward model on groups, evaluate on held-out groups, save it; return the result record.

    `model` and `tokenizer` may be passed already built (e.g. from a config, as the GPU benchmark does);
    otherwise `config.base_model` is loaded. After the last epoch the model's figures on the held-out groups
    and on each of `suites` join the record ("evaluation", "suites"; see `evaluation.final_evaluation`).
    """
    config = _config_checked(config, train_groups, model)
    accelerator, bf16 = _accelerator_start(config)
    emit = _event_sink(accelerator, on_event)
    model, tokenizer = _model_prepare(config, model, tokenizer)
    config = dataclasses.replace(config, shared_prompt=_shared_prompt_decide(config, model))
    pad_multiple = 8 if accelerator.device.type == "cuda" else 1
    encoded = _groups_encode(config, tokenizer, train_groups, eval_groups, emit)
    plans = _epoch_plans(config, encoded.train, accelerator, pad_multiple)
    total_steps = _total_steps(config, plans)
    # On the device before the optimizer exists, so that its state is created there.
    model.to(accelerator.device)
    optimizer = _optimizer_create(config, model)
    scheduler = _schedule_create(config, optimizer, total_steps)
    model, optimizer = _training_prepare(config, accelerator, model, optimizer)
    training = _Training(
        config=config,
        accelerator=accelerator,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        encoded=encoded,
        pad_id=tokenizer.pad_token_id,
        pad_multiple=pad_multiple,
        emit=emit,
    )
    tally = _epochs_run(training, plans, total_steps)
    result = _result_record(config, accelerator, encoded, tally, bf16)
    result.update(_final_evaluation(training, tokenizer, eval_groups, tally, suites))
    _model_save(config, accelerator, model, tokenizer, result, extra_metadata)
    return result


@dataclass
class _Encoded:
    """The tokenised training and evaluation groups, and how many answers were cut to `max_length`."""

    train: list[EncodedGroup]
    eval: list[EncodedGroup]
    truncated: int


@dataclass
class _Training:
    """What the epoch loop works with, built once by `train`."""

    config: TrainConfig
    accelerator: Any
    model: Any
    optimizer: torch.optim.Optimizer
    scheduler: Any
    encoded: _Encoded
    pad_id: int
    pad_multiple: int
    emit: EventSink


@dataclass
class _Tally:
    """What the epoch loop counts, for the progress events and the result record."""

    # Kept on the device: reading them every step would stall the GPU queue; they are read at the end.
    grad_norm_sum: torch.Tensor
    grad_norm_max: torch.Tensor
    clipped_steps: torch.Tensor
    step: int = 0
    train_seconds: float = 0.0
    # CPU time of this process: a steadier figure than wall time on a shared machine.
    train_cpu_seconds: float = 0.0
    answers_seen: int = 0
    tokens_seen: int = 0
    padded_seen: int = 0
    last_loss: float = float("nan")
    step_loss: torch.Tensor | None = None  # the latest step's loss, on the device
    grad_norm: torch.Tensor | None = None  # the latest step's norm, None where the backend does not report it
    # The first step whose loss or gradient norm was not finite, and how (a `_NONFINITE` key); 0 and 0 until
    # then. On the device, read where the loss is read (`_divergence_check`).
    nonfinite_step: torch.Tensor | None = None
    nonfinite_kind: torch.Tensor | None = None
    eval_metrics: dict[str, Any] = field(default_factory=dict)
    eval_scores: list[list[float]] | None = None  # every held-out answer's reward at the latest check

    @classmethod
    def start(cls, device: torch.device) -> _Tally:
        """Nothing counted yet, with the device-side sums on `device`."""
        tally = cls(*(torch.zeros((), device=device) for _ in range(3)))
        tally.nonfinite_step = torch.zeros((), dtype=torch.long, device=device)
        tally.nonfinite_kind = torch.zeros((), dtype=torch.long, device=device)
        return tally


def _config_checked(config: TrainConfig, train_groups: Sequence[Group], model: Any) -> TrainConfig:
    """Refuse an unknown loss or no training data; fill in the default base model when none is given."""
    if config.loss not in LOSSES:
        raise ValueError(f"unknown loss {config.loss!r}; expected one of {LOSSES}")
    if not train_groups:
        raise ValueError("no training groups: every row was left out or the file is empty")
    if config.init_from and not config.base_model:
        # Warm starts keep naming the model the chain of runs began from.
        base = read_metadata(config.init_from).get("base_model") or config.init_from
        config = dataclasses.replace(config, base_model=base)
    if not config.base_model and model is None:
        from .modeling import default_base_model

        config = dataclasses.replace(config, base_model=default_base_model())
    return config


def _shared_prompt_decide(config: TrainConfig, model: Any) -> bool:
    """Whether this run uses the shared-prompt layout; never forced on a model it would compute wrong."""
    supported = shared_prompt_supported(model, config.max_length)
    if config.shared_prompt and not supported:
        raise ValueError(
            f"shared_prompt needs a decoder classifier of {sorted(SHARED_PROMPT_MODEL_TYPES)} with "
            "sdpa or eager attention and no sliding window shorter than max_length"
        )
    return supported if config.shared_prompt is None else config.shared_prompt


def _accelerator_start(config: TrainConfig) -> tuple[Any, bool]:
    """This process's Accelerator (bf16 when asked for or supported, TF32 on CUDA) and whether bf16 is on."""
    from accelerate import Accelerator

    cuda = torch.cuda.is_available()
    bf16 = config.bf16 if config.bf16 is not None else bool(cuda and torch.cuda.is_bf16_supported())
    if cuda and config.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return Accelerator(mixed_precision="bf16" if bf16 else "no"), bf16


def _event_sink(accelerator: Any, on_event: EventSink | None) -> EventSink:
    """Where events go: `on_event` in the main process, nowhere in the others."""
    return (on_event or (lambda e: None)) if accelerator.is_main_process else (lambda e: None)


def _model_prepare(config: TrainConfig, model: Any, tokenizer: Any) -> tuple[Any, Any]:
    """Seed, then load the base model (or give a passed-in one its reward head) and set it up to train."""
    from accelerate.utils import set_seed

    # Seed before the model is built: the new reward head's initial weights come from this RNG.
    set_seed(config.seed)
    if model is None or tokenizer is None:
        model, tokenizer = load_base(config.init_from or config.base_model, config.attn_implementation)
    else:
        configure_reward_head(model, tokenizer)
    if config.disable_dropout:
        disable_dropout(model)
    if config.gradient_checkpointing:
        _set_activation_checkpointing(model, True)
        model.config.use_cache = False
    if config.lora_r:
        model = _lora_wrap(config, model)
    return model, tokenizer


def _lora_wrap(config: TrainConfig, model: Any) -> Any:
    """The model with LoRA adapters on its linear layers; only they and the reward head train."""
    from peft import LoraConfig, TaskType, get_peft_model

    lora = LoraConfig(
        task_type=TaskType.SEQ_CLS,  # which keeps the head (`score` / `classifier`) trainable in full
        r=config.lora_r,
        lora_alpha=config.lora_alpha if config.lora_alpha is not None else 2 * config.lora_r,
        lora_dropout=config.lora_dropout,
        target_modules=config.lora_target_modules or "all-linear",
    )
    return get_peft_model(model, lora)


def _groups_encode(
    config: TrainConfig,
    tokenizer: Any,
    train_groups: Sequence[Group],
    eval_groups: Sequence[Group],
    emit: EventSink,
) -> _Encoded:
    """Tokenise the groups (training groups without their unpaired answers); report it as a `data` event."""
    t0 = time.perf_counter()
    shared = bool(config.shared_prompt)
    train_enc = encode_groups(
        [only_paired_answers(g) for g in train_groups], tokenizer, config.max_length, shared
    )
    eval_enc = encode_groups(eval_groups, tokenizer, config.max_length, shared)
    truncated = sum(g.truncated for g in train_enc) + sum(g.truncated for g in eval_enc)
    emit(
        {
            "event": "data",
            "train_groups": len(train_enc),
            "eval_groups": len(eval_enc),
            "train_answers": sum(len(g.input_ids) for g in train_enc),
            "train_pairs": sum(len(g.pairs) for g in train_enc),
            "truncated_answers": truncated,
            "layout": "shared_prompt" if shared else "plain",
            "train_tokens": sum(g.n_tokens for g in train_enc),
            "tokenize_seconds": round(time.perf_counter() - t0, 3),
        }
    )
    return _Encoded(train_enc, eval_enc, truncated)


def _epoch_plans(
    config: TrainConfig, train_enc: Sequence[EncodedGroup], accelerator: Any, pad_multiple: int
) -> list[list[list[int]]]:
    """Every epoch's micro-batches for this process, planned up front (so the step count is known)."""
    return [
        _shard(
            epoch_plan(train_enc, config, epoch, pad_multiple),
            accelerator.process_index,
            accelerator.num_processes,
        )
        for epoch in range(config.epochs)
    ]


def _total_steps(config: TrainConfig, plans: Sequence[Sequence[list[int]]]) -> int:
    """Optimizer steps over all epochs: micro-batches in `grad_accum`s, capped by `max_steps`."""
    total_steps = sum(math.ceil(len(p) / config.grad_accum) for p in plans)
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    return total_steps


def _optimizer_create(config: TrainConfig, model: Any) -> torch.optim.Optimizer:
    """AdamW with weight decay on the weight matrices only (not on biases and norms)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    param_groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    # The fused kernel is several times faster than the per-tensor loop, on CPU as well as CUDA.
    try:
        return torch.optim.AdamW(param_groups, lr=config.lr, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.AdamW(param_groups, lr=config.lr)


def _schedule_create(config: TrainConfig, optimizer: torch.optim.Optimizer, total_steps: int) -> Any:
    """The learning rate: a linear warm-up over `warmup_ratio` of the steps, then a linear decay to zero."""
    from transformers import get_linear_schedule_with_warmup

    return get_linear_schedule_with_warmup(
        optimizer, int(config.warmup_ratio * total_steps), max(total_steps, 1)
    )


def _training_prepare(
    config: TrainConfig, accelerator: Any, model: Any, optimizer: torch.optim.Optimizer
) -> tuple[Any, torch.optim.Optimizer]:
    """Hand the model and optimizer to Accelerate, compile the model if asked, and put it in training mode.

    What is prepared is the model inside a `RewardForward`, so that both layouts run through its forward
    (the one DDP hooks into).
    """
    model, optimizer = accelerator.prepare(RewardForward(model), optimizer)
    if config.torch_compile:
        # dynamic=True: token-budget batches change shape every step; recompiling each time would be worse.
        model = torch.compile(model, dynamic=True)
    model.train()
    return model, optimizer


def _epochs_run(training: _Training, plans: Sequence[list[list[int]]], total_steps: int) -> _Tally:
    """Every epoch, each followed by an evaluation when due; stops early once `max_steps` steps are taken."""
    from tqdm.auto import tqdm

    config, accelerator = training.config, training.accelerator
    tally = _Tally.start(accelerator.device)
    bar = tqdm(
        total=total_steps,
        desc="train",
        file=sys.stderr,
        disable=not (accelerator.is_main_process and config.show_progress_bar),
    )
    for epoch in range(config.epochs):
        done = _epoch_run(training, tally, plans[epoch], epoch, total_steps, bar)
        last_epoch = done or epoch == config.epochs - 1
        if training.encoded.eval and (config.eval_every_epoch or last_epoch):
            tally.eval_scores = group_scores(
                _reward_model_of(accelerator, training.model),
                training.encoded.eval,
                training.pad_id,
                config.eval_batch_tokens,
                accelerator,
            )
            tally.eval_metrics = ranking_metrics(
                [g.pairs for g in training.encoded.eval],
                [g.ranking for g in training.encoded.eval],
                tally.eval_scores,
            )
            training.emit({"event": "eval", "epoch": epoch + 1, "step": tally.step, **tally.eval_metrics})
        if done:
            break
    bar.close()
    return tally


def _epoch_run(
    training: _Training, tally: _Tally, plan: list[list[int]], epoch: int, total_steps: int, bar: Any
) -> bool:
    """One epoch's optimisation steps, timed, with progress every `log_every`; True when `max_steps` hit."""
    config = training.config
    done = False
    _cuda_synchronize()
    epoch_start = time.perf_counter()
    epoch_cpu_start = time.process_time()
    for start in range(0, len(plan), config.grad_accum):
        if config.max_steps is not None and tally.step >= config.max_steps:
            done = True
            break
        chunk = plan[start : start + config.grad_accum]
        _optimisation_step(training, tally, chunk)
        bar.update(1)
        if tally.step % config.log_every == 0 or tally.step == total_steps:
            position = epoch + (start + len(chunk)) / max(len(plan), 1)
            _divergence_check(training, tally, epoch)
            _progress_report(training, tally, position, epoch_start, total_steps, bar)
    if tally.step:
        _divergence_check(training, tally, epoch)  # before this epoch's evaluation and the model's save
        tally.last_loss = float(tally.step_loss)
    _cuda_synchronize()
    epoch_seconds = time.perf_counter() - epoch_start
    tally.train_seconds += epoch_seconds
    tally.train_cpu_seconds += time.process_time() - epoch_cpu_start
    training.emit(
        {"event": "epoch", "epoch": epoch + 1, "seconds": round(epoch_seconds, 3), "step": tally.step}
    )
    return done


def _reward_model_of(accelerator: Any, model: Any) -> Any:
    """The model being trained (a classifier or its PEFT wrapper) out of Accelerate's, compile's and ours."""
    unwrapped = accelerator.unwrap_model(model)
    unwrapped = getattr(unwrapped, "_orig_mod", unwrapped)
    return unwrapped.model if isinstance(unwrapped, RewardForward) else unwrapped


def _cuda_synchronize() -> None:
    """Wait for the GPU's queue to drain (a no-op without CUDA), so that wall times cover the work."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _optimisation_step(training: _Training, tally: _Tally, chunk: list[list[int]]) -> None:
    """One optimizer step over `grad_accum` micro-batches, the loss divided by the whole step's terms."""
    config, accelerator, model = training.config, training.accelerator, training.model
    device = accelerator.device
    micro = [
        collate_any(
            [training.encoded.train[i] for i in idx],
            training.pad_id,
            training.pad_multiple,
            _row_tokens(config),
        )
        for idx in chunk
    ]
    step_terms = sum(_step_term_count(b, config.loss) for b in micro) or 1
    # Kept on the device: reading it every step would stall the GPU queue; it is read when logged.
    step_loss_t = torch.zeros((), device=device)
    for k, batch in enumerate(micro):
        sync = k == len(micro) - 1
        ctx = contextlib.nullcontext() if sync else accelerator.no_sync(model)
        with ctx:
            rewards = batch_rewards(model, batch, device).float()
            total, _ = batch_loss_sum(
                rewards,
                batch["better"].to(device),
                batch["worse"].to(device),
                # On the CPU: Plackett-Luce selects unranked groups' pairs by it, which on the
                # device would read a mask back (a host sync every micro-batch).
                batch["pair_group"],
                batch["rankings"],
                config.loss,
                config.center_rewards_coefficient,
                None if batch["margins"] is None else batch["margins"].to(device),
            )
            accelerator.backward(total / step_terms)
        step_loss_t += total.detach() / step_terms
        tally.answers_seen += sum(batch["group_sizes"])
        tally.tokens_seen += batch["n_tokens"]
        tally.padded_seen += int(batch["input_ids"].numel())
    # Measured even without clipping: the norm and how often the bound cuts it show whether clipping
    # shrinks the steps. Kept on the device, read at the end.
    grad_norm = _grad_norm(accelerator, model, config.max_grad_norm)
    if grad_norm is not None:
        grad_norm = grad_norm.detach().float()
        tally.grad_norm_sum += grad_norm
        tally.grad_norm_max = torch.maximum(tally.grad_norm_max, grad_norm)
        if config.max_grad_norm:
            tally.clipped_steps += grad_norm > config.max_grad_norm
    training.optimizer.step()
    training.scheduler.step()
    training.optimizer.zero_grad(set_to_none=True)
    tally.step += 1
    tally.step_loss, tally.grad_norm = step_loss_t, grad_norm
    _divergence_note(tally, step_loss_t, grad_norm)


def _divergence_note(tally: _Tally, step_loss: torch.Tensor, grad_norm: torch.Tensor | None) -> None:
    """Note the step if its loss or gradient norm is the first not finite: on the device, nothing read."""
    kind = torch.isnan(step_loss).long() + 2 * torch.isinf(step_loss).long()
    if grad_norm is not None:
        kind = torch.where(kind == 0, 3 * (~torch.isfinite(grad_norm)).long(), kind)
    first = tally.nonfinite_kind == 0
    # The step number goes in as a kernel argument: a tensor made from it would be a copy to the device.
    tally.nonfinite_step = torch.where(first, (kind > 0).long() * tally.step, tally.nonfinite_step)
    tally.nonfinite_kind = torch.where(first, kind, tally.nonfinite_kind)


def _divergence_check(training: _Training, tally: _Tally, epoch: int) -> None:
    """Stop with `TrainingDiverged` once a step's loss or gradient norm was not finite (one read).

    Read only where the loss is read anyway, so a diverged run takes at most `log_every` steps more before
    it stops; every process stops at the same step (the flags are reduced over processes).
    """
    found = torch.stack([tally.nonfinite_step, tally.nonfinite_kind])
    if training.accelerator.num_processes > 1:
        found = training.accelerator.reduce(found, reduction="max")
    step, kind = found.tolist()
    if kind:
        raise TrainingDiverged(
            f"{_NONFINITE[kind]} at step {step} (epoch {epoch + 1}); "
            f"lower the learning rate (it was {training.config.lr:g})"
        )


def _progress_report(
    training: _Training, tally: _Tally, epoch: float, epoch_start: float, total_steps: int, bar: Any
) -> None:
    """Read the latest step's loss and gradient norm from the device and emit them as a `progress` event."""
    # Both figures in one read: each read from the device waits for its queue to drain.
    if tally.grad_norm is None:
        step_loss, norm = float(tally.step_loss), None
    else:
        step_loss, norm = torch.stack([tally.step_loss, tally.grad_norm]).tolist()
    tally.last_loss = step_loss
    bar.set_postfix(loss=f"{step_loss:.4f}")
    training.emit(
        {
            "event": "progress",
            "step": tally.step,
            "total_steps": total_steps,
            "epoch": epoch,
            "loss": round(step_loss, 6),
            "grad_norm": None if norm is None else _significant(norm),
            "lr": training.scheduler.get_last_lr()[0],
            "elapsed_seconds": round(tally.train_seconds + time.perf_counter() - epoch_start, 3),
            "answers_seen": tally.answers_seen,
            "tokens_seen": tally.tokens_seen,
        }
    )


def _result_record(
    config: TrainConfig, accelerator: Any, encoded: _Encoded, tally: _Tally, bf16: bool
) -> dict[str, Any]:
    """The run's `result` event: counts, throughput, memory, final loss, gradient norms and evaluation."""
    device = accelerator.device
    step, grad_norm = tally.step, tally.grad_norm
    train_seconds = tally.train_seconds
    peak_mb, peak_kind = _peak_memory_mb(device)
    world = accelerator.num_processes
    return {
        "event": "result",
        "output_dir": config.output_dir,
        "steps": step,
        "epochs": config.epochs,
        "train_seconds": round(train_seconds, 3),
        "train_cpu_seconds": round(tally.train_cpu_seconds, 3),
        # Throughput is summed over processes: each rank processed its own share in the same wall time.
        "answers_per_second": round(tally.answers_seen * world / max(train_seconds, 1e-9), 2),
        "tokens_per_second": round(tally.tokens_seen * world / max(train_seconds, 1e-9), 1),
        "padded_tokens_per_second": round(tally.padded_seen * world / max(train_seconds, 1e-9), 1),
        "padding_fraction": round(1 - tally.tokens_seen / max(tally.padded_seen, 1), 4),
        "peak_memory_mb": round(peak_mb, 1),
        "peak_memory_kind": peak_kind,
        "final_loss": round(tally.last_loss, 6),
        # Gradient norm before clipping, over the optimizer steps (None where the backend does not report it).
        "grad_norm_mean": _significant(float(tally.grad_norm_sum) / step)
        if step and grad_norm is not None
        else None,
        "grad_norm_max": _significant(float(tally.grad_norm_max)) if step and grad_norm is not None else None,
        "clipped_step_fraction": (
            round(float(tally.clipped_steps) / step, 4)
            if step and grad_norm is not None and config.max_grad_norm
            else None
        ),
        "train_groups": len(encoded.train),
        "eval_groups": len(encoded.eval),
        "truncated_answers": encoded.truncated,
        "layout": "shared_prompt" if config.shared_prompt else "plain",
        "device": str(device),
        "processes": world,
        "bf16": bf16,
        "eval": tally.eval_metrics,
    }


def _final_evaluation(
    training: _Training, tokenizer: Any, eval_groups: Sequence[Group], tally: _Tally, suites: Sequence[Suite]
) -> dict[str, Any]:
    """The trained model's figures on the held-out groups (scored by the last check) and on every suite."""
    config, accelerator = training.config, training.accelerator
    model = _reward_model_of(accelerator, training.model)

    def score(groups: Sequence[Group]) -> list[list[float]]:
        encoded = encode_groups(groups, tokenizer, config.max_length, bool(config.shared_prompt))
        return group_scores(model, encoded, training.pad_id, config.eval_batch_tokens, accelerator)

    return final_evaluation(
        held_out=eval_groups,
        held_out_scores=tally.eval_scores,
        suites=suites,
        score=score,
        output_dir=config.output_dir if accelerator.is_main_process else None,
    )


def _model_save(
    config: TrainConfig,
    accelerator: Any,
    model: Any,
    tokenizer: Any,
    result: dict[str, Any],
    extra_metadata: dict[str, Any] | None,
) -> None:
    """Save the model, its tokenizer and metadata to `output_dir` (the main process; the others wait)."""
    accelerator.wait_for_everyone()
    if config.output_dir and accelerator.is_main_process:
        unwrapped = _reward_model_of(accelerator, model)
        if config.lora_r:
            # The adapter alone (small, for reuse on the same base), then the merged model: the directory
            # itself loads and scores like any other, with no PEFT needed.
            unwrapped.save_pretrained(Path(config.output_dir) / "adapter")
            unwrapped = unwrapped.merge_and_unload()
        if config.gradient_checkpointing:
            _set_activation_checkpointing(unwrapped, False)
            unwrapped.config.use_cache = True
        configure_reward_head(unwrapped, tokenizer)
        metadata = {
            "engine": "rewardlab.training.reward_model",
            "engine_version": ENGINE_VERSION,
            "created_at": dt.datetime.now(dt.UTC).isoformat(),
            "base_model": config.base_model,
            "init_from": config.init_from,
            "max_length": config.max_length,
            "text_format": "chat_template" if uses_chat_template(tokenizer) else "role_tagged_pair",
            "arguments": dataclasses.asdict(config),
            "metrics": {k: v for k, v in result.items() if k != "event"},
            "torch_version": torch.__version__,
            **(extra_metadata or {}),
        }
        save_reward_model(unwrapped, tokenizer, Path(config.output_dir), metadata)
    accelerator.wait_for_everyone()
