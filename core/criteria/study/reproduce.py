"""Reproducing a recorded trial: ``criteria reproduce SPEC --trial N`` (or ``--run-id`` of its
MLflow run).

The trial's configuration is rebuilt from the study's storage (the parameters Optuna sampled,
the spec's fixed values), trained again on the same splits with the same seed, and every number
recorded for it is compared with the new run: the objective, each fold's value and, from the
trial's report (:mod:`criteria.study.reports`, in the output folder or its MLflow run), every
validation metric of every epoch. The reproduction holds when no difference exceeds the
tolerance (default 0.005, i.e. half a percentage point).

Runs match exactly on one machine when the study trained with ``[train] deterministic = true``;
without it, threads and kernels may add in another order, and the differences are usually far
below the tolerance.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from criteria.data.splits import holdout, kfold
from criteria.engine.fit import fit
from criteria.errors import CriteriaError
from criteria.spec.load import Spec
from criteria.study.objective import reduce_epochs, reduce_folds
from criteria.study.prepare import make_job, prepare_data
from criteria.study.progress import StudyProgress
from criteria.study.reports import REPORTS_FOLDER, TrialRecord, report_path
from criteria.study.storage import load_study

__all__ = ["DEFAULT_TOLERANCE", "Delta", "Reproduction", "find_trial", "reproduce_trial"]

DEFAULT_TOLERANCE = 0.005


class ReproduceError(CriteriaError):
    """The trial asked for cannot be reproduced (not found, not complete, another study's run)."""


@dataclass(frozen=True)
class Delta:
    """One recorded number against its reproduction."""

    name: str  # "objective macro_f1", "fold 0", "fold 0 epoch 2 macro_f1"
    recorded: float | None
    reproduced: float | None

    @property
    def delta(self) -> float | None:
        if self.recorded is None or self.reproduced is None:
            return None
        return self.reproduced - self.recorded


@dataclass
class Reproduction:
    trial: int
    tolerance: float
    deltas: list[Delta] = field(default_factory=list)
    seconds: float = 0.0
    report_source: str | None = None  # where the per-epoch metrics were recorded (None: no report found)

    @property
    def compared(self) -> list[Delta]:
        return [d for d in self.deltas if d.delta is not None]

    @property
    def largest(self) -> Delta | None:
        return max(self.compared, key=lambda d: abs(d.delta), default=None)  # type: ignore[arg-type]

    @property
    def exceeded(self) -> list[Delta]:
        return [d for d in self.compared if abs(d.delta) > self.tolerance]  # type: ignore[arg-type]

    @property
    def holds(self) -> bool:
        return not self.exceeded


def find_trial(spec: Spec, number: int | None = None, run_id: str | None = None) -> Any:
    """The study's trial ``number``, or the trial of MLflow run ``run_id``; it must be complete."""
    from optuna.trial import TrialState

    if (number is None) == (run_id is None):
        raise ReproduceError("name the trial to reproduce: --trial N, or --run-id with its MLflow run id")
    if run_id is not None:
        number = _trial_of_run(spec, run_id)
    study = load_study(spec, create=False)
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    if number not in trials:
        raise ReproduceError(f"study {spec.study.name!r} has no trial {number} (it has trials 0 to {len(trials) - 1}); "
                             "`criteria study status` lists them")
    trial = trials[number]
    if trial.state != TrialState.COMPLETE:
        what = {TrialState.FAIL: "failed", TrialState.PRUNED: "was pruned", TrialState.RUNNING: "is still running",
                TrialState.WAITING: "has not run yet"}.get(trial.state, trial.state.name.lower())
        raise ReproduceError(f"trial {number} {what}: only a complete trial has final values to compare; choose a "
                             "complete one (`criteria study status` shows the best)")
    return trial


def _trial_of_run(spec: Spec, run_id: str) -> int:
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from criteria.study.tracking import redact, tracking_uri

    client = MlflowClient(tracking_uri())
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise ReproduceError(f"no MLflow run {run_id!r} in {redact(tracking_uri())}; check the id, or set "
                             "MLFLOW_TRACKING_URI to the store the study tracked to") from None
    experiment = client.get_experiment(run.info.experiment_id).name
    if experiment != spec.study.name or "criteria.trial" not in run.data.tags:
        raise ReproduceError(f"MLflow run {run_id} is not a trial of study {spec.study.name!r} (it is "
                             f"{'a run of ' + repr(experiment) if experiment != spec.study.name else 'no trial run'}); "
                             "pass the spec of its study, or a trial's run id")
    return int(run.data.tags["criteria.trial"])


def recorded_report(spec: Spec, trial: Any, output: Path | None) -> tuple[dict[str, Any] | None, str | None]:
    """The trial's report: from the output folder, else from its MLflow run; with where it was found."""
    if output is not None:
        path = report_path(output / REPORTS_FOLDER, trial.number)
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8")), str(path)
    run_id = _run_of_trial(spec, trial.number)
    if run_id is None:
        return None, None
    try:
        import mlflow

        from criteria.study.tracking import tracking_uri

        mlflow.set_tracking_uri(tracking_uri())
        return mlflow.artifacts.load_dict(f"runs:/{run_id}/report.json"), f"MLflow run {run_id}"
    except Exception:  # no such artifact (a study from before reports): compare what the storage has
        return None, None


def _run_of_trial(spec: Spec, number: int) -> str | None:
    try:
        from mlflow.tracking import MlflowClient

        from criteria.study.tracking import tracking_uri

        client = MlflowClient(tracking_uri())
        experiment = client.get_experiment_by_name(spec.study.name)
        if experiment is None:
            return None
        runs = client.search_runs([experiment.experiment_id], f"tags.`criteria.trial` = '{number}'", max_results=1,
                                  order_by=["attributes.start_time DESC"])
        return runs[0].info.run_id if runs else None
    except Exception:  # no tracking store here
        return None


def reproduce_trial(spec: Spec, trial: Any, *, tolerance: float = DEFAULT_TOLERANCE, output: Path | None = None,
                    progress: StudyProgress | None = None) -> Reproduction:
    """Train ``trial``'s configuration again as the study did (same splits, seed and reports per
    epoch) and compare every recorded number with the new run."""
    import optuna

    start = time.perf_counter()
    progress = progress or StudyProgress()
    config = spec.space.suggest(optuna.trial.FixedTrial(trial.params, number=trial.number))
    data = prepare_data(spec)
    record = TrialRecord(spec.study.name, trial.number, spec.study.seed, data)
    report, source = recorded_report(spec, trial, output)
    if spec.data.split == "kfold":
        splits = kfold(data.corpus, data.study_indices, spec.data.folds, spec.study.seed)
    else:
        splits = [holdout(data.corpus, data.study_indices, spec.data.validation_fraction, spec.study.seed)]
    runtime = config.backend.build()
    progress.trial_started(trial.number)
    fold_values = []
    for fold, split in enumerate(splits):
        record.fold(fold, split.name)
        # a listener, as the study's pruner was: the same validation passes inside each epoch
        job = make_job(spec, data, config, split.train, split.validation, callbacks=[record.epoch], runtime=runtime)
        result = fit(job, progress)
        study = spec.study
        if study.multi_objective:
            fold_values.append([reduce_epochs(result.history, study.epoch_reduction, d, m)
                                for m, d in zip(study.metrics, study.directions)])
        else:
            fold_values.append(reduce_epochs(result.history, study.epoch_reduction, study.direction))
    reproduction = Reproduction(trial.number, tolerance, report_source=source)
    reproduction.deltas = _compare(spec, trial, fold_values, record, report)
    reproduction.seconds = time.perf_counter() - start
    return reproduction


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return None if math.isnan(value) else float(value)


def _compare(spec: Spec, trial: Any, fold_values: list[Any], record: TrialRecord,
             report: dict[str, Any] | None) -> list[Delta]:
    study = spec.study
    deltas = []
    if study.multi_objective:
        values = [reduce_folds([f[i] for f in fold_values], study.fold_reduction) for i in range(len(study.metrics))]
    else:
        values = [reduce_folds(fold_values, study.fold_reduction)]
    for metric, recorded, value in zip(study.metrics, trial.values, values):
        deltas.append(Delta(f"objective {metric}", _number(recorded), _number(value)))
    for fold, (recorded, value) in enumerate(zip(trial.user_attrs.get("fold_values", []), fold_values)):
        for i, (a, b) in enumerate(zip(recorded if isinstance(recorded, list) else [recorded],
                                       value if isinstance(value, list) else [value])):
            suffix = f" {study.metrics[i]}" if study.multi_objective else ""
            deltas.append(Delta(f"fold {fold}{suffix}", _number(a), _number(b)))
    if report is None:
        return deltas
    for recorded_fold, new_fold in zip(report.get("folds", []), record.folds):
        new = {(r.epoch, r.part): r for r in new_fold.reports}
        for entry in recorded_fold.get("reports", []):
            again = new.get((entry["epoch"], entry["part"]))
            if again is None or entry["part"] != entry["parts"]:
                continue  # compare each epoch's end (a report inside an epoch is one pass of the same)
            where = f"fold {recorded_fold['fold']} epoch {entry['epoch']}"
            deltas.append(Delta(f"{where} train_loss", _number(entry.get("train_loss")), _number(again.train_loss)))
            for name, value in entry.get("metrics", {}).items():
                if name in ("support", "positives", "tn", "fp", "fn", "tp", "evidence_pairs"):
                    continue  # counts, fixed by the data
                deltas.append(Delta(f"{where} {name}", _number(value), _number(again.metrics.get(name))))
    return deltas
