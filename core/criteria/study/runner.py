"""Running a study from a spec: ``criteria run``.

Creates or resumes an Optuna study (sampler and pruner from plugins, storage from the spec, a
SQLite file here by default), runs the trials still missing through the :class:`Objective`, and
tracks everything in MLflow. With several metrics the study is multi-objective: each trial returns
one value per metric, nothing is reported to a pruner (Optuna does not prune such studies), and
the best trials are the Pareto front, of which the one best on the first metric is exported.
Ctrl-C stops cleanly: the running trial is marked failed ("interrupted"), and re-running the same
command resumes, running only the trials still missing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from criteria.plugin.ranges import Categorical, choice_label
from criteria.spec.load import Spec
from criteria.study.objective import Objective
from criteria.study.outcomes import FAILURE_ATTR, INTERRUPTED_ATTR
from criteria.study.pareto import FrontTrial, exported_trial, order_front
from criteria.study.prepare import PreparedData, prepare_data
from criteria.study.progress import StudyPlan, StudyProgress
from criteria.study.stages import pretraining_counts
from criteria.study.storage import load_study, storage_url
from criteria.study.tracking import StudyTracker, git_commit, hardware, redact

__all__ = ["BEST_MODEL_FOLDER", "StudySummary", "enqueue_starting_points", "finished_trials", "run_study",
           "summarize"]

BEST_MODEL_FOLDER = "best-model"


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
    pretraining: dict[str, int] = field(default_factory=dict)  # adapted encoders used, pretrained, from the cache


def finished_trials(study: Any) -> int:
    """Trials that count toward ``[study] trials``: complete, pruned, or failed for a recorded
    reason (an interrupted trial does not count, so a resumed study runs it again)."""
    from optuna.trial import TrialState

    return sum(
        1 for t in study.get_trials(deepcopy=False)
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        or (t.state == TrialState.FAIL and FAILURE_ATTR in t.user_attrs)
    )


def run_study(spec: Spec, *, track: bool = True, progress: StudyProgress | None = None,
              output: Path | None = None) -> tuple[Any, StudySummary, PreparedData, StudyTracker | None]:
    """Create or resume the spec's study and run the trials still missing; ``progress`` hears of
    the study, each trial and each epoch."""
    import optuna

    # Optuna logs every failed trial with its traceback, Ctrl-C included; the objective records
    # the failures users can act on, and the CLI says what an interruption means.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    progress = progress or StudyProgress()
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
    objective = Objective(spec, data, tracker, progress, keep)
    wanted = spec.study.trials
    timeout = spec.study.timeout_minutes * 60 if spec.study.timeout_minutes else None
    progress.study_started(StudyPlan(spec.study.name, wanted, finished_trials(study), timeout,
                                     spec.space.default().backend.build().describe(), data.corpus.summary()))

    def stop_when_done(study: Any, trial: Any) -> None:
        finished = finished_trials(study)
        progress.trial_finished(trial, finished)
        if wanted is not None and finished >= wanted:
            study.stop()

    interrupted = False
    remaining = None if wanted is None else wanted - finished_trials(study)
    if remaining is None or remaining > 0:
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
    failures = [(t.number, t.user_attrs.get(FAILURE_ATTR, "interrupted" if t.user_attrs.get(INTERRUPTED_ATTR) else "unknown"))
                for t in trials if t.state == TrialState.FAIL]
    return StudySummary(
        name=spec.study.name, storage=redact(storage_url(spec)), tracking=tracker.where if tracker else "off",
        counts=counts, best_value=best.value if best and not front else None,
        best_params=dict(best.params) if best else {}, best_trial=best.number if best else None, seconds=seconds,
        interrupted=interrupted, failures=failures, metrics=spec.study.metrics, directions=spec.study.directions,
        front=front, pretraining=pretraining_counts(trials),
    )
