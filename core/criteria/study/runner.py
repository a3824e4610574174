"""Running a study from a spec: ``criteria run``, as one worker of the study.

Creates or resumes an Optuna study (sampler and pruner from plugins, storage from the spec, a
SQLite file here by default), runs trials through the :class:`Objective` until the study has
``[study] trials`` across all its workers (:class:`~criteria.study.budget.TrialBudget`), and
tracks everything in MLflow. With several metrics the study is multi-objective: each trial returns
one value per metric, nothing is reported to a pruner (Optuna does not prune such studies), and
the best trials are the Pareto front, of which the one best on the first metric is exported.
Ctrl-C stops cleanly: the running trial is marked failed ("interrupted"), and re-running the same
command resumes, running only the trials still missing.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from criteria.errors import CriteriaError
from criteria.plugin.ranges import Categorical, choice_label
from criteria.spec.load import Spec
from criteria.study.budget import (
    NOT_NEEDED_ATTR,
    TrialBudget,
    TrialNotNeeded,
    counts_toward_trials,
    enqueued_configuration,
    lost_to_another_worker,
)
from criteria.study.folders import KEPT_FOLDER
from criteria.study.keeping import KeptModels
from criteria.study.objective import Objective
from criteria.study.outcomes import FAILURE_ATTR, INTERRUPTED_ATTR
from criteria.study.pareto import FrontTrial, exported_trial, order_front
from criteria.study.prepare import PreparedData, prepare_data
from criteria.study.progress import StudyPlan, StudyProgress
from criteria.study.reports import REPORTS_FOLDER
from criteria.study.stages import pretraining_counts
from criteria.study.storage import (
    PatientTrial,
    RetryLostTrials,
    build_sampler,
    is_connection_loss,
    load_study,
    open_study,
    patiently,
    serves_one_worker,
    storage_url,
)
from criteria.study.tracking import (
    MLFLOW_RUN_ATTR,
    PARENT_RUN_ATTR,
    StudyTracker,
    git_commit,
    hardware,
    redact,
    tracking_uri,
)
from criteria.study.workers import (
    WORKER_ATTR,
    LocalWorker,
    Worker,
    free_index,
    index_taken,
    run_worker_processes,
    worker_label,
)

__all__ = ["BEST_MODEL_FOLDER", "StudySummary", "enqueue_starting_points", "failure_reason", "finished_trials",
           "kept_models", "open_tracker", "run_local_workers", "run_study", "summarize"]

BEST_MODEL_FOLDER = "best-model"
_log = logging.getLogger(__name__)


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
    trials_per_worker: dict[str, int] = field(default_factory=dict)  # finished trials by worker label
    complete: bool = False  # the study has its trials (or its time is up) and nothing runs
    export_here: bool = False  # complete, and this worker ran the trial that finished last: it exports
    worker: str = ""  # this process as a worker ("w0 host:pid"); empty when it ran no trials
    pretraining: dict[str, int] = field(default_factory=dict)  # adapted encoders used, pretrained, from the cache


def finished_trials(study: Any) -> int:
    """Trials that count toward ``[study] trials``: complete, pruned, or failed for a recorded
    reason (an interrupted trial does not count, so a resumed study runs it again)."""
    return sum(1 for t in study.get_trials(deepcopy=False) if counts_toward_trials(t))


def run_study(spec: Spec, *, track: bool = True, progress: StudyProgress | None = None,
              output: Path | None = None, worker_index: int | None = None,
              ) -> tuple[Any, StudySummary, PreparedData, StudyTracker | None]:
    """Create or resume the spec's study and, as the worker of index ``worker_index`` (default: see
    :func:`~criteria.study.workers.free_index`), run trials until the study has its
    ``[study] trials`` across all its workers; ``progress`` hears of the study, each trial and
    each epoch."""
    import optuna

    # Optuna logs every failed trial with its traceback, Ctrl-C included; the objective records
    # the failures users can act on, and the CLI says what an interruption means.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    _quiet_not_needed_trials()
    progress = progress or StudyProgress()
    start = time.perf_counter()
    timeout = spec.study.timeout_minutes * 60 if spec.study.timeout_minutes else None
    deadline = time.monotonic() + timeout if timeout else None
    url = storage_url(spec)
    tracker: StudyTracker | None = None

    def close_lost_run(trial: Any) -> None:
        if tracker is not None:
            tracker.close_lost_trial(trial)

    lost = RetryLostTrials(spec.study.max_retries, forget=(WORKER_ATTR, MLFLOW_RUN_ATTR), on_lost=close_lost_run)
    study, created = open_study(spec, lost_trials=lost)
    index = free_index(study.get_trials(deepcopy=False)) if worker_index is None else worker_index
    worker = Worker.here(index, spec.study.seed)
    if worker.seed != spec.study.seed:
        study.sampler = build_sampler(spec, worker.seed)
    budget = TrialBudget(study, spec, worker, lost, url)
    budget.check_alone()  # a SQLite study run by another process: refused before anything is written
    enqueue_starting_points(study, spec)
    data = prepare_data(spec)
    if track:
        tracker = open_tracker(spec, study, data, created)
    objective = Objective(spec, data, tracker, progress, kept_models(spec, output),
                          output / REPORTS_FOLDER if output is not None else None, deadline)
    objective.tags.update(worker.tags())
    progress.study_started(StudyPlan(spec.study.name, spec.study.trials, finished_trials(study), timeout,
                                     spec.space.default().backend.build().describe(), data.corpus.summary()))
    stop_now = False

    def run_trial(trial: Any) -> Any:
        nonlocal stop_now, worker
        trial.set_user_attr(WORKER_ATTR, worker.attrs())
        try:
            budget.admit(trial)
        except TrialNotNeeded as exc:
            stop_now = exc.stop
            raise
        if index_taken(study.get_trials(deepcopy=False), trial.number, worker):
            worker = _move_to_free_index(study, spec, worker)
            objective.tags.update(worker.tags())
            trial.set_user_attr(WORKER_ATTR, worker.attrs())
        return objective(PatientTrial(trial, spec, url))

    def after_trial(study: Any, trial: Any) -> None:
        if NOT_NEEDED_ATTR not in trial.user_attrs:
            progress.trial_finished(trial, finished_trials(study))
        if stop_now or not budget.next_trial(deadline):
            study.stop()

    interrupted = _optimize(study, run_trial, after_trial, budget, deadline, spec, url)
    if budget.busy is not None:
        raise budget.busy
    summary = summarize(study, spec, time.perf_counter() - start, interrupted, tracker)
    summary.worker = worker.label
    tally = budget.tally()
    time_is_up = deadline is not None and time.monotonic() >= deadline
    summary.complete = not interrupted and tally.running == 0 and (
        time_is_up or (spec.study.trials is not None and tally.finished >= spec.study.trials))
    summary.export_here = summary.complete and budget.ran_last_trial()
    if tracker:
        tracker.log_summary({"best_value": summary.best_value} if summary.best_value is not None else {})
        if summary.front:
            objectives = ", ".join(f"{m} ({d})" for m, d in zip(summary.metrics, summary.directions))
            tracker.set_tags({"criteria.objectives": objectives,
                              "criteria.pareto_front": ", ".join(str(t.number) for t in summary.front)})
        if interrupted and tally.running == 0:  # other workers still running keep the parent run open
            tracker.finish(interrupted=True)
    return study, summary, data, tracker


def kept_models(spec: Spec, output: Path | None) -> KeptModels | None:
    """The study's best trials' models under ``output`` (None: no model is kept): the best
    ``keep_models`` for export = "keep", at least the ``ensemble`` size when there is one."""
    count = spec.study.models_kept
    if output is None or count == 0:
        return None
    return KeptModels(output / KEPT_FOLDER, count, spec.study.directions)


def _optimize(study: Any, run_trial: Callable[[Any], Any], after_trial: Callable[[Any, Any], None],
              budget: TrialBudget, deadline: float | None, spec: Spec, url: str) -> bool:
    """Optuna's loop, for as long as the budget wants trials from this worker, through short losses
    of the database. Returns whether Ctrl-C stopped it."""
    try:
        while patiently(lambda: budget.next_trial(deadline), spec, url):
            try:
                # No n_trials: the budget stops the loop once enough trials count across all
                # workers, so a trial that failed without a recorded reason (interrupted, lost)
                # is run again.
                study.optimize(run_trial, callbacks=[after_trial], catch=(TrialNotNeeded,), gc_after_trial=True)
                return False
            except Exception as exc:
                if lost_to_another_worker(exc):
                    # This worker was out of touch for longer than grace_seconds: another one
                    # failed its trial and queued it again. Drop this result and go on.
                    _log.warning("a trial of this worker was given up as lost by another worker; going on")
                elif is_connection_loss(exc):
                    patiently(budget.tally, spec, url)  # back within grace_seconds, or StorageLost
                else:
                    raise
    except KeyboardInterrupt:
        return True
    return False


def _move_to_free_index(study: Any, spec: Spec, worker: Worker) -> Worker:
    """Two workers started with one index (at the same moment, without one given) would draw the
    same configurations: the later one takes a free index, and a sampler seeded for it, before
    it samples."""
    moved = Worker.here(free_index(study.get_trials(deepcopy=False), taken=True), spec.study.seed)
    study.sampler = build_sampler(spec, moved.seed)
    _log.warning("worker index %d is taken by another running worker; this one is now %s", worker.index,
                 moved.label)
    return moved


def run_local_workers(spec: Spec, workers: Sequence[LocalWorker], command: Callable[[LocalWorker], list[str]],
                      on_line: Callable[[LocalWorker, str], None], *, track: bool = True,
                      ) -> tuple[Any, StudySummary, PreparedData, StudyTracker | None, dict[int, int]]:
    """Run the spec's study with ``workers`` on this machine, each a process running
    ``command(worker)`` (a ``criteria run`` that exports nothing), and wait for them.

    Everything the workers would otherwise race to do is done here first: the study is created
    and its starting points queued, the data tokenized (into the cache they read), the MLflow
    parent run made. A storage that serves one worker (SQLite) is refused before anything starts.
    Returns the study, its summary, the data, the tracker (open: the caller exports and closes
    it) and each worker's exit code by index.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = storage_url(spec)
    if serves_one_worker(url) and len(workers) > 1:
        raise CriteriaError(
            f"SQLite serves one worker: {len(workers)} workers would write one file ({redact(url)}). Put the "
            'study on PostgreSQL: storage = "env:CRITERIA_STORAGE" in [study], with '
            "CRITERIA_STORAGE=postgresql://USER:PASSWORD@HOST:5432/DATABASE (pip install 'criteria[postgres]'; "
            "see docs/scale-out.md), or run one worker (--workers 1)"
        )
    start = time.perf_counter()
    study, created = open_study(spec)
    TrialBudget(study, spec, Worker.here(0, spec.study.seed), RetryLostTrials(spec.study.max_retries), url) \
        .check_alone()
    enqueue_starting_points(study, spec)
    data = prepare_data(spec)
    tracker = open_tracker(spec, study, data, created) if track else None
    try:
        codes = run_worker_processes(workers, command, on_line)
    except KeyboardInterrupt:
        if tracker:
            tracker.finish(interrupted=True)
        raise
    study = load_study(spec, create=False)
    summary = summarize(study, spec, time.perf_counter() - start, False, tracker)
    finished = finished_trials(study)
    summary.complete = summary.counts["running"] == 0 and (
        spec.study.trials is None or finished >= spec.study.trials
        or (spec.study.timeout_minutes is not None and time.perf_counter() - start >= spec.study.timeout_minutes * 60))
    summary.export_here = summary.complete
    return study, summary, data, tracker, codes


def open_tracker(spec: Spec, study: Any, data: PreparedData, created: bool = False, keep_id: bool = True
                 ) -> StudyTracker:
    """The study's MLflow parent run, made by the worker that ``created`` the study and kept with
    it (its id in the study's user attribute :data:`PARENT_RUN_ATTR`); the other workers wait for
    that id and nest their trial runs under it. Without ``keep_id`` (``criteria export``) nothing
    is written to the study and the run's state is left as it is."""
    from criteria import __version__

    parent_id = study.user_attrs.get(PARENT_RUN_ATTR)
    if parent_id is None and not created and keep_id and not study.get_trials(deepcopy=False):
        parent_id = _wait_for_parent_run(study)
    tracker = StudyTracker(spec.study.name, {
        "criteria.version": __version__, "criteria.git_commit": git_commit(),
        "criteria.hardware": hardware(), "criteria.data_sha256": data.corpus.sha256,
        "criteria.storage": redact(storage_url(spec)), "criteria.spec_file": str(spec.path),
    }, uri=tracking_uri(spec.study.tracking_uri), running=keep_id, parent_id=parent_id,
        find=parent_id is None and not created)  # a study tracked before it kept its parent run's id
    if keep_id and parent_id != tracker.parent_id:
        study.set_user_attr(PARENT_RUN_ATTR, tracker.parent_id)
    return tracker


def _wait_for_parent_run(study: Any, seconds: float = 30.0) -> str | None:
    """The parent run id that the worker that has just created the study is about to keep with it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        parent_id = study.user_attrs.get(PARENT_RUN_ATTR)
        if parent_id is not None:
            return parent_id
        time.sleep(0.5)
    return None


def _quiet_not_needed_trials() -> None:
    """Optuna logs every failed trial as a warning; a trial that was not needed did no work."""

    class NotNeeded(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return "TrialNotNeeded" not in record.getMessage()

    logger = logging.getLogger("optuna.study._optimize")
    if not any(isinstance(f, NotNeeded) for f in logger.filters):
        logger.addFilter(NotNeeded())


def enqueue_starting_points(study: Any, spec: Spec) -> None:
    """Queue the spec's ``[[study.enqueue]]`` configurations ahead of sampled ones. One already
    queued, running or finished is not queued again; one whose trial was interrupted, or lost
    with its worker beyond its retries, is. (Workers that queue at the same moment may queue one
    twice: the second copy's trial ends unneeded, see TrialBudget.admit.)"""
    from optuna.trial import TrialState

    present = {enqueued_configuration(t) for t in study.get_trials(deepcopy=False)
               if t.state in (TrialState.WAITING, TrialState.RUNNING) or counts_toward_trials(t)}
    dimensions = dict(spec.space.dimensions())
    for params in spec.study.enqueue:
        # Optuna stores a categorical choice by its label (tuples such as Adam's betas included).
        stored = {name: choice_label(tuple(value) if isinstance(value, list) else value)
                  if isinstance(dimensions[name], Categorical) else value
                  for name, value in params.items()}
        if json.dumps(stored, sort_keys=True) not in present:
            study.enqueue_trial(stored)


def summarize(study: Any, spec: Spec, seconds: float, interrupted: bool, tracker: StudyTracker | None) -> StudySummary:
    from optuna.trial import TrialState

    trials = [t for t in study.get_trials(deepcopy=False) if NOT_NEEDED_ATTR not in t.user_attrs]
    counts = {state.name.lower(): sum(1 for t in trials if t.state == state)
              for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING,
                            TrialState.WAITING)}
    best = exported_trial(study, spec)
    front = []
    if spec.study.multi_objective and best is not None:
        front = [FrontTrial(t.number, tuple(t.values), dict(t.params))
                 for t in order_front(study.best_trials, spec.study.directions)]
    retried_as = {t.system_attrs["failed_trial"]: t.number for t in trials if "failed_trial" in t.system_attrs}
    failures = [(t.number, failure_reason(t, retried_as.get(t.number))) for t in trials if t.state == TrialState.FAIL]
    per_worker = Counter(worker_label(t) for t in trials if counts_toward_trials(t))
    return StudySummary(
        name=spec.study.name, storage=redact(storage_url(spec)), tracking=tracker.where if tracker else "off",
        counts=counts, best_value=best.value if best and not front else None,
        best_params=dict(best.params) if best else {}, best_trial=best.number if best else None, seconds=seconds,
        interrupted=interrupted, failures=failures, metrics=spec.study.metrics, directions=spec.study.directions,
        front=front, pretraining=pretraining_counts(trials), trials_per_worker=dict(sorted(per_worker.items())),
    )


def failure_reason(trial: Any, retried_as: int | None = None) -> str:
    """Why a failed trial failed, in words."""
    if FAILURE_ATTR in trial.user_attrs:
        return trial.user_attrs[FAILURE_ATTR]
    if trial.user_attrs.get(INTERRUPTED_ATTR):
        return "interrupted"
    if retried_as is not None:
        return f"its worker was lost; run again as trial {retried_as}"
    return "no reason recorded (its worker was lost or crashed)"
