"""Running a study from a spec: ``criteria run``.

Creates or resumes an Optuna study (sampler and pruner from plugins, storage from the spec, a
SQLite file here by default), trains each trial's configuration with the engine on every split,
reports each epoch to the pruner with steps unique across folds, and tracks everything in MLflow.
With several metrics the study is multi-objective: each trial returns one value per metric, nothing
is reported to a pruner (Optuna does not prune such studies), and the best trials are the Pareto
front, of which the one best on the first metric is exported.
A trial that diverges or runs out of memory is recorded with its reason and the study goes on.
Ctrl-C stops cleanly: the running trial is marked failed ("interrupted"), and re-running the same
command resumes, running only the trials still missing.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from criteria.data import holdout, kfold
from criteria.engine import EpochReport, TrainingDiverged, fit
from criteria.errors import CriteriaError
from criteria.ranges import Categorical, choice_label
from criteria.spec import Spec
from criteria.tracking import StudyTracker, git_commit, hardware, redact
from criteria.training import PreparedData, make_job, prepare_data, save_run_model

DEFAULT_STORAGE_FILE = "criteria-studies.db"
BEST_MODEL_FOLDER = "best-model"
FAILURE_ATTR = "failure_reason"
METRICS_ATTR = "criteria.metrics"  # the study's metric names, in the order of its directions


def storage_url(spec: Spec) -> str:
    return spec.study.storage or f"sqlite:///{Path.cwd() / DEFAULT_STORAGE_FILE}"


@dataclass
class FrontTrial:
    """A trial on the Pareto front of a multi-objective study."""

    number: int
    values: tuple[float, ...]  # one per metric, in the order of [study] metric
    params: dict[str, Any]


@dataclass
class StudySummary:
    name: str
    storage: str  # redacted
    tracking: str  # redacted
    counts: dict[str, int]
    best_value: float | None  # single-objective studies only
    best_params: dict[str, Any]
    best_trial: int | None  # with several objectives: the front's best on the first metric (exported)
    seconds: float
    interrupted: bool = False
    failures: list[tuple[int, str]] = field(default_factory=list)
    metrics: tuple[str, ...] = ()
    directions: tuple[str, ...] = ()
    front: list[FrontTrial] = field(default_factory=list)  # several objectives: the Pareto front, exported first


def finished_trials(study: Any) -> int:
    """Trials that count toward ``[study] trials``: complete, pruned, or failed for a recorded
    reason (an interrupted trial does not count, so a resumed study runs it again)."""
    from optuna.trial import TrialState

    return sum(
        1 for t in study.get_trials(deepcopy=False)
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        or (t.state == TrialState.FAIL and FAILURE_ATTR in t.user_attrs)
    )


def reduce_epochs(history: list[EpochReport], how: str, direction: str, metric: str | None = None) -> float:
    """One metric over a run's epochs (default: the objective the engine tracked, ``EpochReport.value``)."""
    values = [r.value if metric is None else float(r.metrics["overall"][metric]) for r in history]
    if how == "last":
        return values[-1]
    return max(values) if direction == "maximize" else min(values)


def reduce_folds(values: list[float], how: str) -> float:
    return statistics.median(values) if how == "median" else statistics.fmean(values)


def dominates(a: Sequence[float], b: Sequence[float], directions: Sequence[str]) -> bool:
    """Whether values ``a`` are at least as good as ``b`` on every objective and better on one."""
    signs = [1.0 if d == "maximize" else -1.0 for d in directions]
    at_least = all(s * x >= s * y for s, x, y in zip(signs, a, b))
    return at_least and any(s * x > s * y for s, x, y in zip(signs, a, b))


def order_front(front: Sequence[Any], directions: Sequence[str]) -> list[Any]:
    """Pareto-front trials, best on the first objective first (ties: the earlier trial): the first
    is the one a multi-objective study exports."""
    sign = 1.0 if directions[0] == "maximize" else -1.0
    return sorted(front, key=lambda t: (-sign * t.values[0], t.number))


def exported_trial(study: Any, spec: Spec) -> Any:
    """The trial whose model a study exports: the best trial, or with several objectives the
    Pareto front's best on the first metric. None before any trial completed."""
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    if not spec.study.multi_objective:
        return study.best_trial
    return order_front(study.best_trials, spec.study.directions)[0]


def load_study(spec: Spec, *, create: bool = True) -> Any:
    import optuna

    url = storage_url(spec)
    sampler = pruner = None
    if create:  # built outside the storage errors below, so a plugin's own error keeps its message
        sampler, pruner = _build_study_plugin(spec.sampler, seed=spec.study.seed), _build_study_plugin(spec.pruner)
    # One metric: created exactly as single-objective studies always were.
    objectives = ({"directions": list(spec.study.directions)} if spec.study.multi_objective
                  else {"direction": spec.study.direction})
    try:
        if not create:
            study = optuna.load_study(study_name=spec.study.name, storage=url)
        else:
            study = optuna.create_study(
                study_name=spec.study.name, storage=url, load_if_exists=True, sampler=sampler, pruner=pruner,
                **objectives,
            )
    except KeyError:
        raise CriteriaError(f"no study named {spec.study.name!r} in {redact(url)}; run `criteria run` first") from None
    except Exception as exc:  # storage URL errors come from SQLAlchemy with the URL in them
        raise CriteriaError(f"cannot open the study storage {redact(url)}: {type(exc).__name__}") from None
    _check_objectives(study, spec, url)
    return study


def _check_objectives(study: Any, spec: Spec, url: str) -> None:
    """A resumed study must optimise what the spec says: Optuna keeps the stored directions, and
    the metric names label every value."""
    stored = [d.name.lower() for d in study.directions]
    metrics = study.user_attrs.get(METRICS_ATTR)
    wanted = list(spec.study.directions)
    if stored != wanted or (metrics is not None and metrics != list(spec.study.metrics)):
        what = ", ".join(f"{m} ({d})" for m, d in zip(metrics or ["?"] * len(stored), stored))
        raise CriteriaError(
            f"study {spec.study.name!r} in {redact(url)} optimises {what}, but the spec asks for "
            f"{', '.join(f'{m} ({d})' for m, d in zip(spec.study.metrics, wanted))}; give the study another "
            "[study] name (or storage) to optimise something else"
        )
    if metrics is None:
        study.set_user_attr(METRICS_ATTR, list(spec.study.metrics))


def _build_study_plugin(plugin: Any, **kwargs: Any) -> Any:
    try:
        return plugin.build(**kwargs)
    except (ValueError, RuntimeError, KeyError) as exc:
        raise CriteriaError(f"{plugin.kind} {plugin.name!r} cannot be built: {exc}") from None


class Objective:
    """The function Optuna calls per trial: sample, train every split, reduce, track."""

    def __init__(self, spec: Spec, data: PreparedData, tracker: StudyTracker | None,
                 on_epoch: Callable[[int, EpochReport], None] | None = None, keep_folder: Path | None = None) -> None:
        self.spec, self.data, self.tracker, self.on_epoch = spec, data, tracker, on_epoch
        self.keep_folder = keep_folder  # where the best trial's model is kept (export = "keep")
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
        import torch
        from pydantic import ValidationError

        try:
            config = self.spec.space.suggest(trial)
        except ValidationError as exc:  # a sampled combination a plugin's Config rejects
            return self._fail(trial, None, f"invalid configuration: {exc.errors()[0]['msg']}")
        params = config.params()
        run_id = None
        if self.tracker:
            versions = {f"criteria.plugin.{kind}": f"{p.name} ({_source(p)})" for kind, p in config.plugins.items()}
            run_id = self.tracker.start_trial(trial.number, params, {**self.tags, **versions})
        epochs = config.train.epochs
        fold_values = []
        first_fold = None
        try:
            for fold, split in enumerate(self.splits):
                report = self._reporter(trial, run_id, fold, epochs, len(self.splits))
                job = make_job(self.spec, self.data, config, split.train, split.validation, callbacks=[report])
                result = fit(job)
                first_fold = first_fold or result
                fold_values.append(self._fold_value(result.history))
                if self.per_fold:  # pruners that compare trials fold by fold (Wilcoxon)
                    trial.report(fold_values[-1], fold)
                    if trial.should_prune():
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
            trial.set_user_attr("interrupted", True)
            raise
        if self.multi:
            how = self.spec.study.fold_reduction
            value: Any = tuple(reduce_folds(list(column), how) for column in zip(*fold_values))
            named: Any = dict(zip(self.spec.study.metrics, value))
        else:
            value = named = reduce_folds(fold_values, self.spec.study.fold_reduction)
        trial.set_user_attr("fold_values", fold_values)
        if self.keep_folder is not None and self._is_best(trial, value):
            save_run_model(first_fold, self.data, self.spec, config, self.keep_folder, study=self.spec.study.name,
                           trial=trial.number, value=named)
        if self.tracker:
            self.tracker.end_trial(run_id, "complete", value=named)
        return value

    def _fold_value(self, history: list[EpochReport]) -> float | list[float]:
        """The fold's objective: one value, or one per metric (each over its own best epoch with
        ``epoch_reduction = "best"``)."""
        study = self.spec.study
        if not self.multi:
            return reduce_epochs(history, study.epoch_reduction, study.direction)
        return [reduce_epochs(history, study.epoch_reduction, d, m) for m, d in zip(study.metrics, study.directions)]

    def _is_best(self, trial: Any, value: Any) -> bool:
        from optuna.trial import TrialState

        complete = trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if self.multi:
            return self._is_exported(trial.number, value, complete)
        others = [t.value for t in complete]
        if not others:
            return True
        return value > max(others) if self.spec.study.direction == "maximize" else value < min(others)

    def _is_exported(self, number: int, values: tuple[float, ...], complete: list[Any]) -> bool:
        """Whether this trial, once complete, is the one the study exports (see exported_trial)."""
        import math
        from types import SimpleNamespace

        if any(math.isnan(v) for v in values):
            return False  # Optuna fails a trial with a NaN value
        directions = self.spec.study.directions
        trials = [SimpleNamespace(number=t.number, values=tuple(t.values)) for t in complete]
        trials.append(SimpleNamespace(number=number, values=values))
        front = [t for t in trials if not any(dominates(o.values, t.values, directions) for o in trials)]
        return order_front(front, directions)[0].number == number

    def _reporter(self, trial: Any, run_id: str | None, fold: int, epochs: int, folds: int) -> Callable[[EpochReport], None]:
        import optuna

        def report(epoch: EpochReport) -> None:
            step = fold * epochs + epoch.epoch  # unique across folds, so pruners compare like with like
            if self.per_epoch:
                trial.report(epoch.value, step)
            if self.tracker:
                overall = epoch.metrics["overall"]
                metrics = {f"val_{k}": v for k, v in overall.items() if isinstance(v, float)}
                metrics["train_loss"] = epoch.train_loss
                if folds > 1:
                    metrics.update({f"fold{fold}/{k}": v for k, v in list(metrics.items())})
                self.tracker.log_metrics(run_id, metrics, step)
            if self.on_epoch:
                self.on_epoch(trial.number, epoch)
            if self.per_epoch and trial.should_prune():
                raise optuna.TrialPruned(f"pruned at fold {fold}, epoch {epoch.epoch} ({epoch.value:.4f})")

        return report

    def _fail(self, trial: Any, run_id: str | None, reason: str) -> float | tuple[float, ...]:
        trial.set_user_attr(FAILURE_ATTR, reason)
        if self.tracker:
            self.tracker.end_trial(run_id, "failed", reason)
        # Optuna records a NaN objective as a failed trial and goes on
        return (float("nan"),) * len(self.spec.study.metrics) if self.multi else float("nan")


def _source(plugin: Any) -> str:
    from criteria.registry import get_registry

    info = get_registry().plugins(plugin.kind).get(plugin.name)
    return info.source if info else "unregistered"


def run_study(spec: Spec, *, track: bool = True, on_trial: Callable[[Any], None] | None = None,
              on_epoch: Callable[[int, EpochReport], None] | None = None, output: Path | None = None) -> tuple[Any, StudySummary, PreparedData, StudyTracker | None]:
    """Create or resume the spec's study and run the trials still missing."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    start = time.perf_counter()
    study = load_study(spec)
    enqueue_starting_points(study, spec)
    data = prepare_data(spec)
    tracker = None
    if track:
        from criteria import __version__

        tracker = StudyTracker(spec.study.name, {
            "criteria.version": __version__, "criteria.git_commit": git_commit(),
            "criteria.hardware": hardware(), "criteria.data_sha256": data.corpus.sha256,
            "criteria.storage": redact(storage_url(spec)), "criteria.spec_file": str(spec.path),
        })
    keep = output / BEST_MODEL_FOLDER if output is not None and spec.study.export == "keep" else None
    objective = Objective(spec, data, tracker, on_epoch, keep)
    wanted = spec.study.trials

    def stop_when_done(study: Any, trial: Any) -> None:
        if on_trial:
            on_trial(trial)
        if wanted is not None and finished_trials(study) >= wanted:
            study.stop()

    interrupted = False
    remaining = None if wanted is None else wanted - finished_trials(study)
    if remaining is None or remaining > 0:
        timeout = spec.study.timeout_minutes * 60 if spec.study.timeout_minutes else None
        try:
            # No n_trials: the callback stops once enough trials count, so a trial that failed
            # without a recorded reason (an interruption) is run again rather than lost.
            study.optimize(objective, timeout=timeout, callbacks=[stop_when_done], gc_after_trial=True)
        except KeyboardInterrupt:
            interrupted = True
    summary = summarize(study, spec, time.perf_counter() - start, interrupted, tracker)
    if tracker:
        tracker.log_summary({"best_value": summary.best_value} if summary.best_value is not None else {})
        if summary.front:
            objectives = ", ".join(f"{m} ({d})" for m, d in zip(summary.metrics, summary.directions))
            tracker.set_tags({"criteria.objectives": objectives,
                              "criteria.pareto_front": ", ".join(str(t.number) for t in summary.front)})
        if interrupted:
            tracker.finish(interrupted=True)
    return study, summary, data, tracker


def enqueue_starting_points(study: Any, spec: Spec) -> None:
    """Queue the spec's ``[[study.enqueue]]`` configurations ahead of sampled ones. Optuna skips one
    already tried or queued, so a resumed study does not run them twice."""
    dimensions = dict(spec.space.dimensions())
    for params in spec.study.enqueue:
        # Optuna stores a categorical choice by its label (tuples such as Adam's betas included).
        stored = {name: choice_label(tuple(value) if isinstance(value, list) else value)
                  if isinstance(dimensions[name], Categorical) else value
                  for name, value in params.items()}
        study.enqueue_trial(stored, skip_if_exists=True)


def summarize(study: Any, spec: Spec, seconds: float, interrupted: bool, tracker: StudyTracker | None) -> StudySummary:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    counts = {state.name.lower(): sum(1 for t in trials if t.state == state)
              for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)}
    best = exported_trial(study, spec)
    front = []
    if spec.study.multi_objective and best is not None:
        front = [FrontTrial(t.number, tuple(t.values), dict(t.params))
                 for t in order_front(study.best_trials, spec.study.directions)]
    failures = [(t.number, t.user_attrs.get(FAILURE_ATTR, "interrupted" if t.user_attrs.get("interrupted") else "unknown"))
                for t in trials if t.state == TrialState.FAIL]
    return StudySummary(
        name=spec.study.name, storage=redact(storage_url(spec)), tracking=tracker.where if tracker else "off",
        counts=counts, best_value=best.value if best and not front else None,
        best_params=dict(best.params) if best else {}, best_trial=best.number if best else None, seconds=seconds,
        interrupted=interrupted, failures=failures, metrics=spec.study.metrics, directions=spec.study.directions,
        front=front,
    )
