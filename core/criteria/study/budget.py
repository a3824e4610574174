"""The study's trial budget, shared by every worker through the storage: whether this worker
starts another trial, whether a trial it has just started is needed, and which running trials
are lost with their worker.

There is no lock, queue or scheduler here: every decision reads the study from its storage, and
the one race that reading leaves (two workers deciding at the same moment) is settled by trial
numbers, which the storage hands out once each: the lower number goes first.

- ``[study] trials`` counts trials that completed, were pruned, or failed for a recorded reason.
  A worker starts another trial only while finished plus running trials fall short of it, so the
  study ends with exactly that many (trials already running when it fills may still finish).
  When the rest are all running elsewhere, a worker waits for them rather than leave: if one of
  their workers is lost, its trial is failed and queued again, and someone must run it.
- A trial's worker is lost when its heartbeat is older than ``grace_seconds`` (Optuna's rule,
  ``fail_stale_trials``), or at once when it was a process of this machine that no longer exists.
- An ``[[study.enqueue]]`` configuration runs once: a trial that pops a configuration an earlier
  trial already holds ends at once, not needed.
- A SQLite study serves one worker: a second process is refused.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Callable

from criteria.errors import CriteriaError
from criteria.spec.load import Spec
from criteria.study.outcomes import FAILURE_ATTR
from criteria.study.storage import RetryLostTrials, heartbeat_ages
from criteria.study.urls import redact
from criteria.study.workers import Worker, process_is_gone, worker_label

__all__ = ["NOT_NEEDED_ATTR", "StudyBusy", "Tally", "TrialBudget", "TrialNotNeeded", "counts_toward_trials",
           "enqueued_configuration", "lost_to_another_worker"]

#: The user attribute of a trial that started but was not needed (why); it does not count.
NOT_NEEDED_ATTR = "criteria.not_needed"


class StudyBusy(CriteriaError):
    """Another process runs this study on a storage that serves one worker (SQLite)."""


class TrialNotNeeded(Exception):
    """Raised by a trial that is not needed, before it does any work; Optuna records it as failed,
    and it is marked (:data:`NOT_NEEDED_ATTR`) so that nothing counts or reports it."""

    def __init__(self, reason: str, stop: bool) -> None:
        super().__init__(reason)
        self.stop = stop  # whether this worker should start no further trial


def counts_toward_trials(trial: Any) -> bool:
    """Complete, pruned, or failed for a recorded reason. A trial interrupted (Ctrl-C), lost with
    its worker, or not needed does not count: a resumed study runs it (or another) again."""
    from optuna.trial import TrialState

    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
        trial.state == TrialState.FAIL and FAILURE_ATTR in trial.user_attrs)


def lost_to_another_worker(exc: BaseException) -> bool:
    """Whether ``exc`` says that the trial this worker was running had already been finished by
    another worker (which found its heartbeat stale, failed it and queued it again)."""
    from optuna.exceptions import UpdateFinishedTrialError

    error: BaseException | None = exc
    while error is not None:
        if isinstance(error, UpdateFinishedTrialError) or (
                isinstance(error, ValueError) and str(error).startswith("Cannot tell a ")):
            return True
        error = error.__cause__ or error.__context__
    return False


def enqueued_configuration(trial: Any) -> str | None:
    """The ``[[study.enqueue]]`` parameters a trial was queued with, as one comparable string."""
    fixed = trial.system_attrs.get("fixed_params")
    return json.dumps(fixed, sort_keys=True) if fixed else None


@dataclass(frozen=True)
class Tally:
    finished: int  # count toward [study] trials
    running: int
    waiting: int


class TrialBudget:
    """Where the study stands against ``[study] trials``, for one worker."""

    def __init__(self, study: Any, spec: Spec, worker: Worker, lost_trials: RetryLostTrials, url: str,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.study, self.spec, self.worker, self.lost_trials = study, spec, worker, lost_trials
        self.wanted = spec.study.trials
        self.url = url
        self.one_worker = url.startswith("sqlite:")
        self.poll_seconds = min(spec.study.heartbeat_seconds, 5)
        self.sleep = sleep
        self.busy: StudyBusy | None = None  # set when this worker found another one on a one-worker storage

    def tally(self) -> Tally:
        from optuna.trial import TrialState

        trials = self.study.get_trials(deepcopy=False)
        return Tally(
            finished=sum(1 for t in trials if counts_toward_trials(t)),
            running=sum(1 for t in trials if t.state == TrialState.RUNNING),
            waiting=sum(1 for t in trials if t.state == TrialState.WAITING),
        )

    def fail_lost_trials(self) -> None:
        """Fail the running trials whose worker is lost and queue them again: stale heartbeats
        (Optuna's own check), and processes of this machine that no longer exist."""
        import warnings

        import optuna
        from optuna.trial import TrialState

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(self.study)
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if not process_is_gone(trial):
                continue
            try:  # the storage changes a trial's state once: only one worker gets to retry it
                self.study.tell(trial.number, state=TrialState.FAIL)
            except (RuntimeError, ValueError, optuna.exceptions.UpdateFinishedTrialError):
                continue
            failed = next(t for t in self.study.get_trials(deepcopy=False) if t.number == trial.number)
            self.lost_trials(self.study, failed)

    def check_alone(self) -> None:
        """On a one-worker storage, refuse to start while another process runs a trial of the study."""
        from optuna.trial import TrialState

        if not self.one_worker:
            return
        self.fail_lost_trials()
        running = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if running:
            raise self._busy(running[0])

    def next_trial(self, deadline: float | None) -> bool:
        """Whether this worker should start another trial: False once the study has its trials
        (or the deadline passed); while the rest are running elsewhere, wait to see whether one
        of them is lost and must be run again."""
        while True:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            self.fail_lost_trials()
            if self.wanted is None:
                return True
            tally = self.tally()
            if tally.finished >= self.wanted:
                return False
            if tally.finished + tally.running < self.wanted:
                return True
            self.sleep(self.poll_seconds)

    def admit(self, trial: Any) -> None:
        """Raise :class:`TrialNotNeeded` if the trial this worker has just started (before any
        work) is not needed: another process holds a one-worker storage, its enqueued
        configuration is already taken, or the study already has its trials finished or running."""
        from optuna.trial import TrialState

        trials = self.study.get_trials(deepcopy=False)
        mine = next(t for t in trials if t.number == trial.number)
        earlier_running = [t for t in trials if t.state == TrialState.RUNNING and t.number < trial.number]
        if self.one_worker and earlier_running:
            self.busy = self._busy(earlier_running[0])
            self._not_needed(trial, "another process runs this study", stop=True)
        configuration = enqueued_configuration(mine)
        if configuration is not None:
            taken = [t for t in trials if t.number < trial.number and enqueued_configuration(t) == configuration
                     and (t.state in (TrialState.WAITING, TrialState.RUNNING) or counts_toward_trials(t))]
            if taken:
                self._not_needed(trial, f"its enqueued configuration is trial {taken[0].number}'s", stop=False)
        if self.wanted is not None:
            finished = sum(1 for t in trials if counts_toward_trials(t))
            if finished + len(earlier_running) >= self.wanted:
                self._not_needed(trial, f"the study has its {self.wanted} trials finished or running", stop=True)

    def ran_last_trial(self) -> bool:
        """Whether this worker finished the study: it ran the trial that finished last."""
        finished = [t for t in self.study.get_trials(deepcopy=False) if counts_toward_trials(t)]
        if not finished:
            return False
        last = max(finished, key=lambda t: (t.datetime_complete or t.datetime_start, t.number))
        return self.worker.ran(last)

    def _not_needed(self, trial: Any, reason: str, stop: bool) -> None:
        trial.set_user_attr(NOT_NEEDED_ATTR, reason)
        raise TrialNotNeeded(f"trial {trial.number} not needed: {reason}", stop)

    def _busy(self, trial: Any) -> StudyBusy:
        age = heartbeat_ages(self.study).get(trial.number)
        beat = f", last heartbeat {age:.0f} s ago" if age is not None else ""
        return StudyBusy(
            f"study {self.spec.study.name!r} in {redact(self.url)} is being run by another process (trial "
            f"{trial.number}, worker {worker_label(trial)}{beat}); a SQLite storage serves one worker at a time. "
            "Wait for that run to finish (`criteria study status SPEC` shows it), or put the study on PostgreSQL "
            "to run several workers (docs/scale-out.md). If that process is gone, its trial is failed and retried "
            f"once its heartbeat is {self.spec.study.grace_seconds} s old (study.grace_seconds)."
        )
