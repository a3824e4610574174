"""The function Optuna calls per trial: sample a configuration, train it on every split, report
to the pruner, reduce epochs and folds to the objective, track it, keep the best models, and
write its report.

A trial that diverges or runs out of memory is recorded as failed with its reason
(:data:`FAILURE_ATTR`) and the study goes on; one stopped by Ctrl-C is marked
(:data:`INTERRUPTED_ATTR`) so that a resumed study runs it again. Every trial, however it ends,
leaves a JSON report (:mod:`criteria.study.reports`); a complete trial among the study's best K
keeps its model (:mod:`criteria.study.keeping`). A trial that trained but whose model could not be
kept (a full disk) completes with its value, the reason recorded (:data:`MODEL_NOT_KEPT_ATTR`); the
export then retrains its configuration.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any, Callable

from criteria.data.splits import holdout, kfold
from criteria.engine.fit import fit
from criteria.engine.job import EpochReport, TrainingDiverged
from criteria.spec.load import Spec
from criteria.study.folders import kept_model_folder, write_failure
from criteria.study.keeping import KeptModels
from criteria.study.outcomes import FAILURE_ATTR, INTERRUPTED_ATTR, MODEL_NOT_KEPT_ATTR, PRUNED_ATTR
from criteria.study.prepare import PreparedData, make_job
from criteria.study.progress import StudyProgress
from criteria.study.reports import TrialRecord, model_dropped, write_report
from criteria.study.single import save_run_model
from criteria.study.stages import PRETRAINED_ATTR
from criteria.study.tracking import MLFLOW_RUN_ATTR, StudyTracker

__all__ = ["Objective", "reduce_epochs", "reduce_folds"]


def reduce_epochs(history: list[EpochReport], how: str, direction: str, metric: str | None = None) -> float:
    """One metric over a run's epochs (default: the objective the engine tracked, ``EpochReport.value``)."""
    values = [r.value if metric is None else float(r.metrics["overall"][metric]) for r in history]
    if how == "last":
        return values[-1]
    return max(values) if direction == "maximize" else min(values)


def reduce_folds(values: list[float], how: str) -> float:
    return statistics.median(values) if how == "median" else statistics.fmean(values)


class Objective:
    """The function Optuna calls per trial: sample, train every split, reduce, track."""

    def __init__(self, spec: Spec, data: PreparedData, tracker: StudyTracker | None,
                 progress: StudyProgress | None = None, keep: KeptModels | None = None,
                 reports: Path | None = None, deadline: float | None = None) -> None:
        self.spec, self.data, self.tracker = spec, data, tracker
        self.deadline = deadline  # time.monotonic() at which the study's timeout_minutes ends
        self.progress = progress or StudyProgress()
        self.keep = keep  # the models of the best trials (None: no model is kept)
        self.reports = reports  # the folder of the trials' reports (None: MLflow only, if tracked)
        if spec.data.split == "kfold":
            self.splits = kfold(data.corpus, data.study_indices, spec.data.folds, spec.study.seed)
        else:
            self.splits = [holdout(data.corpus, data.study_indices, spec.data.validation_fraction, spec.study.seed)]
        self.tags = {"criteria.data_sha256": data.corpus.sha256}
        self.multi = spec.study.multi_objective
        # Optuna takes no intermediate values in a multi-objective study (the spec allows only a
        # pruner that never prunes there), so nothing is reported.
        self.per_fold = not self.multi and spec.pruner.reports == "fold"
        self.per_epoch = not self.multi and not self.per_fold

    def __call__(self, trial: Any) -> float | tuple[float, ...]:
        import optuna

        record = TrialRecord(self.spec.study.name, trial.number, self.spec.study.seed, self.data)
        try:
            value = self._run(trial, record)
        except optuna.TrialPruned as pruned:
            self._report(record, "pruned", str(pruned))
            raise
        except KeyboardInterrupt:
            self._report(record, "interrupted", "stopped by the user (Ctrl-C)")
            raise
        except Exception as exc:
            self._report(record, "failed", f"{type(exc).__name__}: {exc}")
            raise
        reason = trial.user_attrs.get(FAILURE_ATTR)
        self._report(record, "failed" if reason else "complete", reason)
        return value

    def _report(self, record: TrialRecord, state: str, reason: str | None) -> None:
        write_report(record.finish(state, reason), self.reports, self.tracker)

    def _run(self, trial: Any, record: TrialRecord) -> float | tuple[float, ...]:
        import optuna
        import torch
        from pydantic import ValidationError

        try:
            config = self.spec.space.suggest(trial)
        except ValidationError as exc:  # a sampled combination a plugin's Config rejects
            return self._fail(trial, None, f"invalid configuration: {exc.errors()[0]['msg']}")
        record.configure(trial.params, config, self.spec.registry)
        self.progress.trial_started(trial.number)
        params = config.params()
        run_id = None
        if self.tracker:
            versions = {f"criteria.plugin.{kind}": f"{p.name} ({_source(self.spec.registry, p)})"
                        for kind, p in config.plugins.items()}
            run_id = self.tracker.start_trial(trial.number, params, {**self.tags, **versions})
            record.mlflow_run_id = run_id
            trial.set_user_attr(MLFLOW_RUN_ATTR, run_id)  # so a worker that finds this trial lost can close it
        epochs = config.train.epochs
        fold_values = []
        first_fold = None
        try:
            runtime = config.backend.build()  # once for every fold of the trial
            record.runtime = runtime.describe()
            for fold, split in enumerate(self.splits):
                record.fold(fold, split.name)
                report = self._reporter(trial, run_id, fold, epochs, len(self.splits), record)
                job = make_job(self.spec, self.data, config, split.train, split.validation, callbacks=[report],
                               runtime=runtime, announce=self.progress.stage_finished)
                if job.pretrained is not None:
                    self._record_pretraining(trial, run_id, fold, job.pretrained)
                result = fit(job, self.progress)
                first_fold = first_fold or result
                fold_values.append(self._fold_value(result.history))
                record.fold_value(fold_values[-1])
                if self.per_fold:  # pruners that compare trials fold by fold (Wilcoxon)
                    trial.report(fold_values[-1], fold)
                    if trial.should_prune():
                        trial.set_user_attr(PRUNED_ATTR, f"fold {fold} ({fold_values[-1]:.4f})")
                        raise optuna.TrialPruned(f"pruned after fold {fold} ({fold_values[-1]:.4f})")
        except optuna.TrialPruned as pruned:
            if self.tracker:
                self.tracker.end_trial(run_id, "pruned", str(pruned))
            raise
        except TrainingDiverged as exc:
            return self._fail(trial, run_id, f"diverged: {exc}")
        except torch.OutOfMemoryError as exc:
            return self._fail(trial, run_id, f"out of memory: {str(exc).splitlines()[0]}")
        except KeyboardInterrupt:
            if self.tracker:
                self.tracker.end_trial(run_id, "interrupted", "stopped by the user (Ctrl-C)")
            trial.set_user_attr(INTERRUPTED_ATTR, True)
            raise
        if self.multi:
            how = self.spec.study.fold_reduction
            value: Any = tuple(reduce_folds(list(column), how) for column in zip(*fold_values))
            named: Any = dict(zip(self.spec.study.metrics, value))
        else:
            value = named = reduce_folds(fold_values, self.spec.study.fold_reduction)
        trial.set_user_attr("fold_values", fold_values)
        record.values = named if isinstance(named, dict) else {self.spec.study.metric: named}
        if self.keep is not None:
            self._keep(trial, run_id, record, first_fold, config, value, named)
        if self.tracker:
            self.tracker.end_trial(run_id, "complete", value=named)
        return value

    def _record_pretraining(self, trial: Any, run_id: str | None, fold: int, adapted: Any) -> None:
        """Whether the fold's adapted encoder came from the cache (a trial attribute, counted by the
        study's summary), and its MLM loss curve in the trial's run (one value per optimizer step)."""
        records = [*trial.user_attrs.get(PRETRAINED_ATTR, ()), {"fold": fold, "key": adapted.key,
                                                                "cached": adapted.cached}]
        trial.set_user_attr(PRETRAINED_ATTR, records)
        if self.tracker:
            prefix = f"fold{fold}/" if len(self.splits) > 1 else ""
            self.tracker.log_series(run_id, f"{prefix}pretrain_mlm_loss", adapted.losses)
            self.tracker.log_series(run_id, f"{prefix}pretrain_mlm_loss_epoch", adapted.epoch_losses)
            self.tracker.tag_run(run_id, {f"criteria.{prefix}pretrain": "cache" if adapted.cached else "pretrained",
                                          f"criteria.{prefix}pretrain_key": adapted.key})

    def _keep(self, trial: Any, run_id: str | None, record: TrialRecord, result: Any, config: Any, value: Any,
              named: Any) -> None:
        """Offer the trial's model to the best K, whole or not at all; a failure to write it (a
        full disk) is recorded, and the trial still completes with its value."""
        try:
            kept, removed = self.keep.offer(trial.study, trial.number, value if self.multi else (value,),
                                   lambda folder: save_run_model(result, self.data, self.spec, config, folder,
                                                                 study=self.spec.study.name, trial=trial.number,
                                                                 value=named))
        except Exception as exc:
            reason = write_failure(exc, kept_model_folder(self.keep.folder, trial.number))
            if reason is None:
                raise
            trial.set_user_attr(MODEL_NOT_KEPT_ATTR, reason)
            record.model_not_kept(reason)
            if self.tracker:
                self.tracker.tag_run(run_id, {MODEL_NOT_KEPT_ATTR: reason})
            return
        record.kept(kept)
        for number in removed:  # their reports say where their models are: nowhere now
            model_dropped(self.reports, number)

    def _fold_value(self, history: list[EpochReport]) -> float | list[float]:
        """The fold's objective: one value, or one per metric (each over its own best epoch with
        ``epoch_reduction = "best"``)."""
        study = self.spec.study
        if not self.multi:
            return reduce_epochs(history, study.epoch_reduction, study.direction)
        return [reduce_epochs(history, study.epoch_reduction, d, m) for m, d in zip(study.metrics, study.directions)]

    def _reporter(self, trial: Any, run_id: str | None, fold: int, epochs: int, folds: int,
                  record: TrialRecord) -> Callable[[EpochReport], None]:
        import optuna

        def report(epoch: EpochReport) -> None:
            record.epoch(epoch)
            # Steps count fractions of epochs (parts of one), numbered across folds: they mean
            # the same in every trial whatever its batch size, so pruners compare like with like.
            step = (fold * epochs + epoch.epoch - 1) * epoch.parts + epoch.part
            if self.per_epoch:
                trial.report(epoch.value, step)
            if self.tracker and epoch.part == epoch.parts:
                overall = epoch.metrics["overall"]
                metrics = {f"val_{k}": v for k, v in overall.items() if isinstance(v, float)}
                metrics["train_loss"] = epoch.train_loss
                if folds > 1:
                    metrics.update({f"fold{fold}/{k}": v for k, v in list(metrics.items())})
                self.tracker.log_metrics(run_id, metrics, fold * epochs + epoch.epoch)
            where = f"epoch {epoch.epoch}" if epoch.part == epoch.parts else \
                f"epoch {epoch.epoch - 1 + epoch.part / epoch.parts:.2f}"
            if self.per_epoch and trial.should_prune():
                trial.set_user_attr(PRUNED_ATTR, f"fold {fold}, {where} ({epoch.value:.4f})")
                raise optuna.TrialPruned(f"pruned at fold {fold}, {where} ({epoch.value:.4f})")
            if self._time_is_up(trial):
                trial.set_user_attr(PRUNED_ATTR, f"fold {fold}, {where} ({epoch.value:.4f}): the study's time ran out")
                raise optuna.TrialPruned(f"stopped at fold {fold}, {where}: the study's time ran out")

        return report

    def _time_is_up(self, trial: Any) -> bool:
        """Past the study's timeout, a running trial stops at its next report (as pruned), so the
        study ends near its time limit rather than a whole trial later; but never the study's only
        chance of a result: while no trial is complete, it trains on."""
        from optuna.trial import TrialState

        if self.deadline is None or time.monotonic() < self.deadline:
            return False
        return bool(trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))

    def _fail(self, trial: Any, run_id: str | None, reason: str) -> float | tuple[float, ...]:
        trial.set_user_attr(FAILURE_ATTR, reason)
        if self.tracker:
            self.tracker.end_trial(run_id, "failed", reason)
        # Optuna records a NaN objective as a failed trial and goes on
        return (float("nan"),) * len(self.spec.study.metrics) if self.multi else float("nan")


def _source(registry: Any, plugin: Any) -> str:
    info = registry.plugins(plugin.kind).get(plugin.name)
    return info.source if info else "unregistered"
