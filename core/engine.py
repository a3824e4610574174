"""The training engine: a lean loop whose every swappable part comes from a plugin.

Backend (device, precision, compile), PEFT method, head, loss, optimizer and scheduler all come
from the trial's configuration; the engine only wires them together: parameter groups (head
learning rate, layer-wise decay), gradient accumulation, clipping, mixed precision, per-epoch
evaluation, early stopping with the best epoch restored, and a callback per epoch (the study
runner reports to its pruner there).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from criteria.batch_probe import MicroBatcher, worst_case_indices
from criteria.batching import bucketed_batches, collate, iterate, sorted_batches
from criteria.data import Corpus
from criteria.errors import CriteriaError
from criteria.freezing import apply_freezing, layer_depth
from criteria.kinds import TrainingPlan
from criteria.metrics import METRIC_NAMES, RANKING_METRICS, evaluate, tune_threshold
from criteria.model import CriterionClassifier, load_encoder
from criteria.search_space import TrialConfig
from criteria.tokens import EncodedPairs

NUM_LABELS = 2
_NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the configuration cannot train."""


@dataclass(frozen=True)
class EpochReport:
    epoch: int
    train_loss: float
    metrics: dict[str, Any]  # criteria.metrics.evaluate() of the validation split
    value: float  # the objective metric
    seconds: float
    train_samples_per_second: float
    threshold: float = 0.5  # the decision threshold the metrics use (tuned on validation, if asked)


@dataclass
class FitResult:
    model: CriterionClassifier
    history: list[EpochReport]
    best_epoch: int
    threshold: float
    validation_probs: np.ndarray
    stopped_early: bool = False

    @property
    def best(self) -> EpochReport:
        return self.history[self.best_epoch - 1]


@dataclass
class TrainingJob:
    """Everything one training run needs."""

    corpus: Corpus
    encoded: EncodedPairs
    train_indices: Sequence[int]
    validation_indices: Sequence[int]
    config: TrialConfig
    model_name: str | None
    pad_token_id: int
    mask_token_id: int | None = None  # what token dropout writes; None disables it
    special_token_ids: tuple[int, ...] = ()  # never dropped
    metric: str = "macro_f1"
    direction: str = "maximize"
    seed: int = 42
    tune_threshold: bool = False
    callbacks: list[Callable[[EpochReport], None]] = field(default_factory=list)


def build_model(job: TrainingJob, runtime: Any, plan: TrainingPlan) -> CriterionClassifier:
    train = job.config.train
    plugins = job.config.plugins
    encoder = load_encoder(
        job.model_name, hidden_dropout=train.hidden_dropout, attention_dropout=train.attention_dropout,
        **runtime.model_kwargs(),
    )
    encoder = plugins["peft"].build(encoder, plan)
    apply_freezing(encoder, train)
    head = plugins["head"].build(encoder.config.hidden_size, NUM_LABELS)
    return CriterionClassifier(encoder, head)


def parameter_groups(model: CriterionClassifier, *, head_lr_multiplier: float, layerwise_lr_decay: float,
                     weight_decay: float | None, lr_scale: Callable[[str], float] = lambda name: 1.0,
                     ) -> list[dict[str, Any]]:
    """Trainable parameters grouped by learning-rate scale and weight decay.

    The head learns at ``head_lr_multiplier`` x the base rate; encoder layer ``i`` of ``n`` at
    ``layerwise_lr_decay ** (n - i)`` (embeddings count as layer 0), times the PEFT method's
    ``lr_scale`` of the parameter. Biases and norms get no decay.
    """
    num_layers = getattr(model.encoder.config, "num_hidden_layers", 0)
    groups: dict[tuple[float, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name.startswith("head."):
            scale = head_lr_multiplier
        else:
            depth = layer_depth(name, num_layers)
            scale = layerwise_lr_decay ** max(0, num_layers - depth) * lr_scale(name.removeprefix("encoder."))
        no_decay = name.endswith(_NO_DECAY) or param.ndim < 2
        groups.setdefault((scale, no_decay), []).append(param)
    out = []
    for (scale, no_decay), params in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        group: dict[str, Any] = {"params": params, "lr_scale": scale}
        if no_decay and weight_decay is not None:
            group["weight_decay"] = 0.0
        out.append(group)
    return out


def fit(job: TrainingJob, progress: Any = None) -> FitResult:
    """Train one configuration on ``job.train_indices`` and evaluate each epoch on the validation split."""
    train = job.config.train
    plugins = job.config.plugins
    torch.manual_seed(job.seed)
    labels = job.corpus.labels
    train_idx = np.asarray(job.train_indices)
    val_idx = np.asarray(job.validation_indices)
    # An optimizer step is `effective` examples, run as micro-batches of at most `batch_size`
    # (fewer where the device runs out of memory): the schedule does not depend on what fits.
    effective = train.effective_batch_size or train.batch_size
    steps_per_epoch = math.ceil(len(train_idx) / effective)
    plan = training_plan(train, steps_per_epoch, job.direction)

    runtime = plugins["backend"].build()
    model = build_model(job, runtime, plan)
    model = runtime.prepare(model)
    core = getattr(model, "_orig_mod", model)
    peft = plugins["peft"]

    class_counts = np.bincount([labels[i] for i in train_idx], minlength=NUM_LABELS).tolist()
    loss_fn = plugins["loss"].build(class_counts).to(runtime.device)

    optimizer_plugin = plugins["optimizer"]
    groups = parameter_groups(
        core, head_lr_multiplier=train.head_lr_multiplier, layerwise_lr_decay=train.layerwise_lr_decay,
        weight_decay=getattr(optimizer_plugin.config, "weight_decay", None), lr_scale=peft.lr_scale,
    )
    optimizer = optimizer_plugin.build(groups)
    scheduler_plugin = plugins["scheduler"]
    scheduler = scheduler_plugin.build(optimizer, plan)
    dropout = TokenDropout.for_job(job, runtime.device)
    optimizer_steps = 0
    scaler = runtime.grad_scaler()
    train_lengths = job.encoded.lengths[train_idx]
    better = (lambda a, b: a > b + train.min_delta) if job.direction == "maximize" else (lambda a, b: a < b - train.min_delta)

    epoch = 0

    def micro_step(indices: np.ndarray, weight: float) -> float:
        """Forward and backward of one micro-batch; ``weight`` is its share of the optimizer step."""
        batch = collate(job.encoded, indices, labels, job.pad_token_id).to(runtime.device)
        input_ids = dropout(batch.input_ids) if dropout else batch.input_ids
        with runtime.autocast():
            logits = model(input_ids, batch.attention_mask, batch.token_type_ids)
        loss = loss_fn(logits.float(), batch.labels)
        penalty = peft.regularization(core.encoder)
        if penalty is not None:
            loss = loss + penalty
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"the training loss became {loss.item()} at epoch {epoch}, "
                                   f"optimizer step {optimizer_steps + 1}")
        (scaler.scale(loss * weight) if scaler else loss * weight).backward()
        return loss.item() * len(indices)

    def free() -> None:
        model.zero_grad(set_to_none=True)  # a step that ran out of memory runs again from the start
        runtime.free_memory()

    batcher = MicroBatcher(train.batch_size, effective, is_out_of_memory=runtime.is_out_of_memory, free=free,
                           max_length=int(train_lengths.max()), device=runtime.device)
    if runtime.probe_batch_size:
        model.train()
        with runtime.fork_rng():  # probing must not shift dropout's random draws
            batcher.probe(lambda size: micro_step(train_idx[worst_case_indices(train_lengths, size)], 1.0),
                          examples=len(train_idx))

    history: list[EpochReport] = []
    best_value: float | None = None
    best_state: dict[str, torch.Tensor] | None = None
    best_probs = np.zeros(0)
    stale = 0
    epoch_task = progress.add_task("epochs", total=train.epochs) if progress else None
    step_task = progress.add_task("train", total=steps_per_epoch) if progress else None
    stopped_early = False
    for epoch in range(1, train.epochs + 1):
        start = time.perf_counter()
        model.train()
        if progress:
            progress.reset(step_task, total=steps_per_epoch, description=f"train epoch {epoch}")
        total_loss, seen = 0.0, 0
        for step_positions in bucketed_batches(train_lengths, effective, seed=job.seed, epoch=epoch):
            indices = train_idx[step_positions]
            total_loss += sum(batcher.run_step(indices, micro_step))
            seen += len(indices)
            optimizer_steps += 1
            _optimizer_step(model, optimizer, scheduler, scaler, train.max_grad_norm,
                            after_step=lambda: peft.after_optimizer_step(core.encoder, optimizer_steps))
            if progress:
                progress.advance(step_task)
        train_seconds = time.perf_counter() - start
        probs, val_loss = predict_probs(model, runtime, job.encoded, val_idx, labels, job.pad_token_id,
                                        train.eval_batch_size, loss_fn, progress)
        val_labels = [labels[i] for i in val_idx]
        groups_ = [job.corpus.pairs[i].criterion_id for i in val_idx]
        # With tuning on, every epoch is scored at its own best threshold, so epochs (and trials)
        # are compared by what the model would be used at, not by how calibrated it is yet.
        threshold = tune_threshold(val_labels, probs, metric=_tunable(job.metric)) if job.tune_threshold else 0.5
        metrics = evaluate(val_labels, probs, groups_, threshold)
        metrics["overall"]["loss"] = val_loss
        value = float(metrics["overall"][job.metric])
        scheduler_plugin.on_validation(scheduler, value)
        report = EpochReport(epoch, total_loss / max(1, seen), metrics, value,
                             time.perf_counter() - start, seen / max(train_seconds, 1e-9), threshold)
        history.append(report)
        if progress:
            progress.advance(epoch_task)
        improved = best_value is None or (not math.isnan(value) and better(value, best_value))
        if improved:
            best_value, stale, best_probs = value, 0, probs
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in core.state_dict().items()}
        else:
            stale += 1
        for callback in job.callbacks:
            callback(report)  # may raise optuna.TrialPruned: nothing after this line is needed then
        if train.patience and stale >= train.patience and epoch < train.epochs:
            stopped_early = True
            break
    if best_state is not None:
        core.load_state_dict(best_state)
    best_epoch = 1 + max(range(len(history)), key=lambda i: _sortable(history[i].value, job.direction))
    return FitResult(core, history, best_epoch, history[best_epoch - 1].threshold, best_probs, stopped_early)


def _tunable(metric: str) -> str:
    """The metric to tune the threshold for: the objective, unless it ignores the threshold."""
    return metric if metric in METRIC_NAMES and metric not in RANKING_METRICS else "macro_f1"


def _sortable(value: float, direction: str) -> float:
    if math.isnan(value):
        return -math.inf
    return value if direction == "maximize" else -value


def training_plan(train: Any, steps_per_epoch: int, direction: str) -> TrainingPlan:
    """Steps of the whole run and of its warmup (``warmup_steps`` wins over ``warmup_ratio``)."""
    total = steps_per_epoch * train.epochs
    warmup = min(train.warmup_steps, total) if train.warmup_steps else int(round(train.warmup_ratio * total))
    return TrainingPlan(total_steps=total, warmup_steps=warmup, steps_per_epoch=steps_per_epoch, direction=direction)


@dataclass(frozen=True)
class TokenDropout:
    """Replace a random share of the non-special tokens of a training batch by the mask token."""

    rate: float
    mask_token_id: int
    special: torch.Tensor

    @classmethod
    def for_job(cls, job: TrainingJob, device: Any) -> "TokenDropout | None":
        rate = job.config.train.token_dropout
        if not rate or job.mask_token_id is None:
            return None
        special = torch.tensor(sorted({job.pad_token_id, *job.special_token_ids}), device=device)
        return cls(rate, job.mask_token_id, special)

    def __call__(self, input_ids: torch.Tensor) -> torch.Tensor:
        drop = torch.rand(input_ids.shape, device=input_ids.device) < self.rate
        drop &= ~torch.isin(input_ids, self.special)
        return input_ids.masked_fill(drop, self.mask_token_id)


def _optimizer_step(model: nn.Module, optimizer: Any, scheduler: Any, scaler: Any, max_grad_norm: float,
                    after_step: Callable[[], None] = lambda: None) -> None:
    if scaler is not None:
        scaler.unscale_(optimizer)
    if max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    scheduler.step()
    after_step()
    optimizer.zero_grad(set_to_none=True)


def predict_probs(model: nn.Module, runtime: Any, encoded: EncodedPairs, indices: np.ndarray,
                  labels: Sequence[int] | None, pad_token_id: int, batch_size: int,
                  loss_fn: nn.Module | None = None, progress: Any = None) -> tuple[np.ndarray, float]:
    """Positive-class probabilities for ``indices`` (in that order), and the mean loss if asked."""
    model.eval()
    labels = labels if labels is not None else [0] * len(encoded)
    probs = np.zeros(len(indices), dtype=np.float64)
    where = {int(index): row for row, index in enumerate(indices)}
    batches = [indices[p] for p in sorted_batches(encoded.lengths[indices], batch_size)]
    task = progress.add_task("evaluate", total=len(batches)) if progress else None
    total_loss = 0.0
    with torch.inference_mode():
        for batch in iterate(encoded, batches, labels, pad_token_id):
            batch = batch.to(runtime.device)
            with runtime.autocast():
                logits = model(batch.input_ids, batch.attention_mask, batch.token_type_ids)
            logits = logits.float()
            if loss_fn is not None:
                total_loss += float(loss_fn(logits, batch.labels)) * len(batch.labels)
            batch_probs = torch.softmax(logits, dim=-1)[:, 1].cpu().numpy()
            for index, p in zip(batch.indices.cpu().tolist(), batch_probs):
                probs[where[index]] = p
            if progress:
                progress.advance(task)
    if progress:
        progress.remove_task(task)
    return probs, total_loss / max(1, len(indices))


def check_trainable(job: TrainingJob) -> None:
    """Fail before any work when a split cannot train (a class missing from the training data)."""
    labels = job.corpus.labels
    present = {labels[i] for i in job.train_indices}
    if present != {0, 1}:
        raise CriteriaError(
            f"the training split has only label(s) {sorted(present)}; it needs both met and not-met "
            "examples. Use more data or a smaller validation/test fraction."
        )
