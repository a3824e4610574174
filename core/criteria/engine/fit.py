"""The training loop: a lean loop whose every swappable part comes from a plugin.

Backend (device, precision, compile), PEFT method, head, loss, optimizer and scheduler all come
from the trial's configuration; the engine only wires them together: parameter groups (head
learning rate, layer-wise decay), micro-batched optimizer steps, clipping, mixed precision,
per-epoch evaluation, early stopping with the best epoch restored, and a callback per epoch (the
study runner reports to its pruner there).

:func:`fit` reads as the loop itself; :class:`_TrainingRun` holds what one run builds (model,
optimizer, ...) and trains and validates one epoch at a time; :class:`EarlyStopping` keeps the
best epoch.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from criteria.data.batching import Batch, UnitPairs, bucketed_batches, collate
from criteria.engine.config import TrainConfig
from criteria.engine.determinism import deterministic_mode
from criteria.engine.frozen_cache import (
    FrozenStates,
    PrefixCut,
    cache_key,
    compute_states,
    frozen_depth,
    states_for,
)
from criteria.engine.inference import predict_probs
from criteria.engine.job import EpochReport, FitResult, TrainingDiverged, TrainingJob, check_trainable
from criteria.engine.metric_names import threshold_metric
from criteria.engine.metrics import evaluate, tune_threshold, tune_thresholds
from criteria.engine.micro_batches import MicroBatcher, worst_case_indices
from criteria.engine.model import (
    NUM_LABELS,
    CriterionClassifier,
    build_model,
    resolve_model_name,
    unwrap_compiled,
)
from criteria.engine.modes import PluginModes
from criteria.engine.optimization import optimizer_step, parameter_groups, training_plan
from criteria.engine.progress import FitProgress
from criteria.engine.token_dropout import TokenDropout

__all__ = ["EarlyStopping", "check_trainable", "fit"]


def fit(job: TrainingJob, progress: FitProgress | None = None) -> FitResult:
    """Train one configuration on ``job.train_indices`` and evaluate each epoch on the validation
    split; ``progress`` hears of every epoch, step and validation batch."""
    train = job.config.train
    progress = progress or FitProgress()
    with deterministic_mode(job.seed, enabled=train.deterministic):
        return _fit(job, train, progress)


def _fit(job: TrainingJob, train: TrainConfig, progress: FitProgress) -> FitResult:
    torch.manual_seed(job.seed)
    run = _TrainingRun(job)
    stopping = EarlyStopping(job.direction, train.patience, train.min_delta)
    history: list[EpochReport] = []
    stopped_early = False
    for epoch in range(1, train.epochs + 1):
        start = time.perf_counter()
        progress.epoch_started(epoch, train.epochs, run.steps_per_epoch)
        train_loss, seen = run.train_epoch(epoch, progress, start)
        train_seconds = time.perf_counter() - start
        report = run.validate(epoch, train_loss, seen, train_seconds, start, progress, part=run.parts,
                              parts=run.parts)
        history.append(report)
        progress.epoch_finished(report)
        if stopping.update(report.value):
            run.keep_best(report)
        for callback in job.callbacks:
            callback(report)  # may raise optuna.TrialPruned: nothing after this line is needed then
        if stopping.exhausted and epoch < train.epochs:
            stopped_early = True
            break
    return run.result(history, stopped_early)


class EarlyStopping:
    """Tracks the best epoch value and how many epochs passed without improving on it."""

    def __init__(self, direction: str, patience: int, min_delta: float) -> None:
        self.direction, self.patience, self.min_delta = direction, patience, min_delta
        self.best: float | None = None
        self.stale = 0

    def update(self, value: float) -> bool:
        """Record an epoch's value; True when it is the best so far (the first always is)."""
        if self.best is None or (not math.isnan(value) and self._better(value, self.best)):
            self.best, self.stale = value, 0
            return True
        self.stale += 1
        return False

    @property
    def exhausted(self) -> bool:
        return bool(self.patience) and self.stale >= self.patience

    def _better(self, a: float, b: float) -> bool:
        return a > b + self.min_delta if self.direction == "maximize" else a < b - self.min_delta


class _TrainingRun:
    """What one run builds from its job (runtime, model, loss, optimizer, scheduler, micro-batcher),
    and one epoch of training or validation at a time."""

    def __init__(self, job: TrainingJob) -> None:
        config, train = job.config, job.config.train
        self.job, self.train = job, train
        self.labels = job.corpus.labels
        self.train_idx = np.asarray(job.train_indices)
        self.val_idx = np.asarray(job.validation_indices)
        # Training examples are units (what the encoder reads), each scoring its pairs of the split.
        self.members = UnitPairs.of(job.encoded.units, self.train_idx)
        # An optimizer step is `effective` units, run as micro-batches of at most `batch_size`
        # (fewer where the device runs out of memory): the schedule does not depend on what fits.
        self.effective = train.effective_batch_size or train.batch_size
        self.steps_per_epoch = math.ceil(len(self.members) / self.effective)
        # Reports inside an epoch (for a pruner listening): at most one per optimizer step.
        self.parts = min(job.reports_per_epoch, self.steps_per_epoch) if job.callbacks else 1
        plan = training_plan(train, self.steps_per_epoch, job.direction)

        self.runtime = runtime = job.runtime or config.backend.build()
        model = build_model(job, runtime, plan)
        self.cut, self.states, self.cache_hit = self._frozen_cache(model)
        self.model = runtime.prepare(model)
        self.core = unwrap_compiled(self.model)
        self.peft = config.peft
        class_counts = np.bincount([self.labels[i] for i in self.train_idx], minlength=NUM_LABELS).tolist()
        self.loss_fn = config.loss.build(class_counts).to(runtime.device)
        groups = parameter_groups(
            self.core, head_lr_multiplier=train.head_lr_multiplier, layerwise_lr_decay=train.layerwise_lr_decay,
            weight_decay=config.optimizer.weight_decay, lr_scale=self.peft.lr_scale,
        )
        self.optimizer = config.optimizer.build(groups)
        self.scheduler = config.scheduler.build(self.optimizer, plan)
        self.modes = PluginModes(config.plugins, {
            "optimizer": self.optimizer, "scheduler": self.scheduler, "peft": self.core.encoder,
            "head": self.core.head, "loss": self.loss_fn, "backend": runtime, "formulation": self.core.scorer,
        })
        self.dropout = TokenDropout.for_job(job, runtime.device)
        self.evidence = job.evidence
        self.scaler = runtime.grad_scaler()
        self.train_lengths = job.encoded.lengths[self.members.units]
        self.positions = np.arange(len(self.members))
        self.optimizer_steps = 0
        self.epoch = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_probs = np.zeros(0)
        self._last_probs = np.zeros(0)
        self.batcher = MicroBatcher(train.batch_size, self.effective, is_out_of_memory=runtime.is_out_of_memory,
                                    free=self._free, max_length=int(self.train_lengths.max()), device=runtime.device)
        if runtime.probe_batch_size:
            self.model.train()
            with runtime.fork_rng():  # probing must not shift dropout's random draws
                self.batcher.probe(lambda size: self._micro_step(worst_case_indices(self.train_lengths, size), 1.0),
                                   examples=len(self.members))

    def _frozen_cache(self, model: CriterionClassifier) -> tuple[PrefixCut | None, FrozenStates | None, bool | None]:
        """The encoder cut above its frozen layers, and their states for every unit (computed now
        or found in the cache), where the frozen-layer cache applies; else ``(None, None, None)``."""
        job, runtime = self.job, self.runtime
        depth = frozen_depth(model.encoder, job.config, runtime)
        if depth is None:
            return None, None, None
        model.to(runtime.device)
        cut = PrefixCut(model.encoder, depth)
        key = cache_key(job.encoded, resolve_model_name(job.model_name), depth, runtime)
        states, hit = compute_states(model, cut, job.encoded, key, runtime, job.pad_token_id,
                                     self.train.eval_batch_size)
        return cut.install(), states, hit

    def _feed(self, batch: Batch) -> None:
        """Hand the batch's cached frozen-layer states to the cut encoder, where there is a cache."""
        if self.cut is not None:
            reads = self.core.reads_criteria
            width = self.core.criteria_input_ids.shape[1] if reads else None
            states_for(self.cut, self.states, batch.units, batch.input_ids.shape[1], self.runtime.device,
                       torch.float32, reads, width)

    def _micro_step(self, positions: np.ndarray, weight: float) -> float:
        """Forward and backward of one micro-batch of units (``positions`` in :attr:`members`);
        ``weight`` is its share of the optimizer step."""
        batch = collate(self.job.encoded, positions, self.labels, self.job.pad_token_id,
                        self.members).to(self.runtime.device)
        self._feed(batch)
        input_ids = self.dropout(batch.input_ids) if self.dropout else batch.input_ids
        with self.runtime.autocast():
            if self.evidence is None:
                logits = batch.pair_logits(self.model(input_ids, batch.attention_mask, batch.token_type_ids))
            else:
                sentence_ids = self.evidence.sentence_ids(batch)
                out, sentence_logits = self.model(input_ids, batch.attention_mask, batch.token_type_ids,
                                                  sentence_ids=sentence_ids)
                logits = batch.pair_logits(out)
                evidence_loss = self.evidence.loss(batch, sentence_ids, sentence_logits)
        loss = self.loss_fn(logits.float(), batch.labels)
        if self.evidence is not None:  # loss = lambda_class * L_criteria + lambda_span * L_evidence
            loss = self.train.criteria_loss_weight * loss
            if evidence_loss is not None:
                loss = loss + self.train.evidence_loss_weight * evidence_loss
        penalty = self.peft.regularization(self.core.encoder)
        if penalty is not None:
            loss = loss + penalty
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"the training loss became {loss.item()} at epoch {self.epoch}, "
                                   f"optimizer step {self.optimizer_steps + 1}")
        (self.scaler.scale(loss * weight) if self.scaler else loss * weight).backward()
        return loss.item() * len(positions)

    def _free(self) -> None:
        self.model.zero_grad(set_to_none=True)  # a step that ran out of memory runs again from the start
        self.runtime.free_memory()

    def train_epoch(self, epoch: int, progress: FitProgress, start: float) -> tuple[float, int]:
        """One pass over the training examples; returns the mean training loss and examples seen.
        With several reports per epoch (and someone listening), the validation split is scored at
        evenly spaced steps and reported to the callbacks (a pruner may stop the trial there)."""
        self.epoch = epoch
        self.model.train()
        self.modes.train()  # back from the previous epoch's validation
        parts = self.parts
        report_after = {math.ceil(self.steps_per_epoch * part / parts): part for part in range(1, parts)}
        total_loss, seen = 0.0, 0
        batches = bucketed_batches(self.train_lengths, self.effective, seed=self.job.seed, epoch=epoch)
        for step, step_positions in enumerate(batches, start=1):
            indices = self.positions[step_positions]
            total_loss += sum(self.batcher.run_step(indices, self._micro_step))
            seen += len(indices)
            self.optimizer_steps += 1
            optimizer_step(self.model, self.optimizer, self.scheduler, self.scaler, self.train.max_grad_norm,
                           after_step=self._after_step)
            progress.step_finished(len(indices))
            if step in report_after and step < len(batches):
                seconds = time.perf_counter() - start
                report = self.validate(epoch, total_loss / max(1, seen), seen, seconds, start, progress,
                                       part=report_after[step], parts=parts)
                for callback in self.job.callbacks:
                    callback(report)  # may raise optuna.TrialPruned
                self.model.train()
                self.modes.train()
        return total_loss / max(1, seen), seen

    def _after_step(self) -> None:
        self.peft.after_optimizer_step(self.core.encoder, self.optimizer_steps)

    def validate(self, epoch: int, train_loss: float, seen: int, train_seconds: float, start: float,
                 progress: FitProgress, part: int = 1, parts: int = 1) -> EpochReport:
        """Score the validation split (at the epoch's tuned thresholds when asked) and report it;
        ``part`` of ``parts`` says how far into the epoch (the epoch's end is ``parts``)."""
        job = self.job
        # Evaluated in the plugins' evaluation mode, and left in it for keep_best and result:
        # the weights scored are the weights kept.
        self.modes.eval()
        evidence = self.evidence.collector() if self.evidence is not None else None
        probs, val_loss = predict_probs(self.model, self.runtime, job.encoded, self.val_idx, self.labels,
                                        job.pad_token_id, self.train.eval_batch_size, self.loss_fn, progress,
                                        before_forward=self._feed, evidence=evidence)
        val_labels = [self.labels[i] for i in self.val_idx]
        groups = [job.corpus.pairs[i].criterion_id for i in self.val_idx]
        # With tuning on, every epoch is scored at its own best thresholds, so epochs (and trials)
        # are compared by what the model would be used at, not by how calibrated it is yet.
        threshold: float | dict[str, float] = 0.5
        if job.tune_threshold:
            metric = threshold_metric(job.metric)
            threshold = (tune_thresholds(val_labels, probs, groups, metric=metric)
                         if self.train.threshold_scope == "per_criterion" else tune_threshold(val_labels, probs, metric))
        metrics = evaluate(val_labels, probs, groups, threshold)
        metrics["overall"]["loss"] = val_loss
        if evidence is not None:
            evidence.add_metrics(metrics, job.corpus)
        value = float(metrics["overall"][job.metric])
        if part == parts:  # schedulers act on the epoch's value
            job.config.scheduler.on_validation(self.scheduler, value)
        self._last_probs = probs
        return EpochReport(epoch, train_loss, metrics, value, time.perf_counter() - start,
                           seen / max(train_seconds, 1e-9), threshold, part, parts)

    def keep_best(self, report: EpochReport) -> None:
        """Remember the weights and validation probabilities of the epoch just validated (named as
        in the whole model: the frozen-layer cut is undone while they are copied)."""
        self.best_probs = self._last_probs
        if self.cut is not None:
            self.cut.restore()
        self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in self.core.state_dict().items()}
        if self.cut is not None:
            self.cut.install()

    def result(self, history: list[EpochReport], stopped_early: bool) -> FitResult:
        """The whole model (frozen layers back in place) with the best epoch's weights, and the
        run's history."""
        self.modes.eval()
        if self.cut is not None:
            self.cut.restore()
        if self.best_state is not None:
            self.core.load_state_dict(self.best_state)
        direction = self.job.direction
        best_epoch = 1 + max(range(len(history)), key=lambda i: _sortable(history[i].value, direction))
        return FitResult(self.core, history, best_epoch, history[best_epoch - 1].threshold, self.best_probs,
                         stopped_early)


def _sortable(value: float, direction: str) -> float:
    if math.isnan(value):
        return -math.inf
    return value if direction == "maximize" else -value
