"""Progress people and log files can follow.

In a terminal: nested bars (study -> trial -> epoch) with steps, samples/s and time left, and one
printed line per epoch and per trial. When standard output is not a terminal (a batch job,
``nohup``, a cluster log): one plain line per epoch and per trial, flushed as it happens, with
the time of day, the metric, the trial's state and the study's estimated time left; no control
codes. :func:`study_progress` picks the one that fits.
"""

from __future__ import annotations

import math
import sys
import time
from contextlib import contextmanager
from typing import Any, Iterator

from rich.console import Console

from criteria.engine.thresholds import describe_threshold
from criteria.study.outcomes import FAILURE_ATTR, INTERRUPTED_ATTR, PRUNED_ATTR
from criteria.study.progress import StudyPlan, StudyProgress

__all__ = ["LogLines", "TerminalBars", "study_progress"]


@contextmanager
def study_progress(console: Console, metric: str) -> Iterator[StudyProgress]:
    """Bars when ``console`` is a terminal, else plain log lines; ``metric`` is the study's first."""
    if console.is_terminal:
        with TerminalBars(console, metric) as bars:
            yield bars
    else:
        yield LogLines(metric)


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _epoch_line(report: Any, metric: str) -> str:
    line = f"val {metric} {report.value:.4f}"
    if report.threshold != 0.5:
        line += f" (threshold {describe_threshold(report.threshold)})"
    return (f"{line}, train loss {report.train_loss:.4f}, {_duration(report.seconds)}, "
            f"{report.train_samples_per_second:.1f} samples/s")


def _trial_outcome(trial: Any, metric: str) -> str:
    state = trial.state.name.lower()
    if state == "complete":
        values = trial.values or []
        shown = f"{metric} {values[0]:.4f}" if len(values) == 1 else ", ".join(f"{v:.4f}" for v in values)
        return f"complete, {shown}"
    if state == "pruned":
        where = trial.user_attrs.get(PRUNED_ATTR)
        return f"pruned at {where}" if where else "pruned"
    reason = trial.user_attrs.get(FAILURE_ATTR) or ("interrupted" if trial.user_attrs.get(INTERRUPTED_ATTR) else "")
    return f"{state}{': ' + reason if reason else ''}"


class _StudyClock:
    """The study's progress in trials and the time left, from the trials finished so far."""

    def __init__(self) -> None:
        self.plan: StudyPlan | None = None
        self.start = time.monotonic()
        self.trial_start = self.start
        self.finished_here = 0

    def started(self, plan: StudyPlan) -> None:
        self.plan, self.start = plan, time.monotonic()

    def trial_started(self) -> None:
        self.trial_start = time.monotonic()

    def trial_seconds(self) -> float:
        return time.monotonic() - self.trial_start

    def eta(self, finished: int) -> float | None:
        """Seconds until the study ends, or None before a trial finished here. A timeout only
        stops new trials, so the study may run one trial past it."""
        plan = self.plan
        if plan is None or not self.finished_here:
            return None
        elapsed = time.monotonic() - self.start
        per_trial = elapsed / self.finished_here
        left = math.inf if plan.trials is None else max(0, plan.trials - finished) * per_trial
        if plan.timeout_seconds is not None:
            # no trial starts after the timeout; one started just before it still runs to its end
            left = 0.0 if elapsed >= plan.timeout_seconds else min(left, plan.timeout_seconds - elapsed + per_trial)
        return None if math.isinf(left) else left


class LogLines(StudyProgress):
    """One plain, flushed line per epoch and per trial: what a log file should hold."""

    def __init__(self, metric: str, stream: Any = None) -> None:
        self.metric, self.stream = metric, stream or sys.stdout
        self.clock = _StudyClock()
        self.trial: int | None = None

    def _line(self, text: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {text}", file=self.stream, flush=True)

    def run_started(self, runtime: str, data: str) -> None:
        self._line(f"training on {runtime}; data: {data}")

    def study_started(self, plan: StudyPlan) -> None:
        self.clock.started(plan)
        wanted = f"{plan.finished} of {plan.trials} trials done" if plan.trials else f"{plan.finished} trials done"
        timeout = f", timeout {_duration(plan.timeout_seconds)}" if plan.timeout_seconds else ""
        self._line(f"study {plan.name}: {wanted}{timeout}; {plan.runtime}; data: {plan.data}")

    def trial_started(self, number: int) -> None:
        self.trial = number
        self.clock.trial_started()

    def stage_finished(self, line: str) -> None:
        who = f"trial {self.trial} " if self.trial is not None else ""
        self._line(f"{who}{line}")

    def epoch_finished(self, report: Any) -> None:
        who = f"trial {self.trial} " if self.trial is not None else ""
        self._line(f"{who}epoch {report.epoch}: {_epoch_line(report, self.metric)}")

    def trial_finished(self, trial: Any, finished: int) -> None:
        self.clock.finished_here += 1
        plan = self.clock.plan
        total = f"/{plan.trials}" if plan and plan.trials else ""
        eta = self.clock.eta(finished)
        left = f"; study ETA {_duration(eta)}" if eta is not None else ""
        self._line(f"trial {trial.number} {_trial_outcome(trial, self.metric)} in "
                   f"{_duration(self.clock.trial_seconds())}; {finished}{total} trials finished{left}")

    def export_started(self) -> None:
        self._line("exporting the best model and scoring it on the held-out posts")


class TerminalBars(StudyProgress):
    """Nested rich bars: the study's trials, the trial's epochs, the epoch's steps."""

    def __init__(self, console: Console, metric: str) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.metric = metric
        self.clock = _StudyClock()
        self.bars = Progress(TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(),
                             TextColumn("{task.fields[rate]:>14}"), TimeElapsedColumn(), TimeRemainingColumn(),
                             console=console, transient=False)
        self.study_task: Any = None
        self.trial_task: Any = None
        self.step_task: Any = None
        self.trial: int | None = None
        self.epoch_label = "epoch"
        self.epoch_start = 0.0
        self.examples = 0

    def __enter__(self) -> TerminalBars:
        self.bars.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bars.__exit__(*exc)

    def _print(self, text: str) -> None:
        self.bars.console.print(text, highlight=False)

    def run_started(self, runtime: str, data: str) -> None:
        self._print(f"training on {runtime}\ndata: {data}")

    def study_started(self, plan: StudyPlan) -> None:
        self.clock.started(plan)
        self._print(f"study [bold]{plan.name}[/]: {plan.runtime}\ndata: {plan.data}")
        self.study_task = self.bars.add_task("study", total=plan.trials, completed=plan.finished, rate="trials")

    def trial_started(self, number: int) -> None:
        self.trial = number
        self.clock.trial_started()
        if self.trial_task is None:
            self.trial_task = self.bars.add_task(f"trial {number}", total=None, rate="epochs")
        else:
            self.bars.reset(self.trial_task, description=f"trial {number}", total=None)

    def epoch_started(self, epoch: int, epochs: int, steps: int) -> None:
        if self.trial_task is None:  # a single run: no study around it
            self.trial_task = self.bars.add_task("training", total=epochs, rate="epochs")
        self.bars.update(self.trial_task, total=epochs)
        self.epoch_start, self.examples = time.monotonic(), 0
        self.epoch_label = f"epoch {epoch}/{epochs}"
        description = f"{self.epoch_label} train"
        if self.step_task is None:
            self.step_task = self.bars.add_task(description, total=steps, rate="")
        else:
            self.bars.reset(self.step_task, description=description, total=steps, rate="")

    def step_finished(self, examples: int) -> None:
        self.examples += examples
        rate = self.examples / max(time.monotonic() - self.epoch_start, 1e-9)
        self.bars.update(self.step_task, advance=1, rate=f"{rate:.1f} samples/s")

    def validation_started(self, batches: int) -> None:
        if self.step_task is not None:
            self.bars.reset(self.step_task, description=f"{self.epoch_label} validate", total=batches, rate="")

    def validation_step(self) -> None:
        if self.step_task is not None:
            self.bars.advance(self.step_task)

    def stage_finished(self, line: str) -> None:
        who = f"trial {self.trial} " if self.trial is not None else ""
        self._print(f"{who}{line}")

    def epoch_finished(self, report: Any) -> None:
        who = f"trial {self.trial} " if self.trial is not None else ""
        self._print(f"{who}epoch {report.epoch}: {_epoch_line(report, self.metric)}")
        self.bars.advance(self.trial_task)

    def trial_finished(self, trial: Any, finished: int) -> None:
        self.clock.finished_here += 1
        self._print(f"trial {trial.number} {_trial_outcome(trial, self.metric)} in "
                    f"{_duration(self.clock.trial_seconds())}")
        self.bars.update(self.study_task, completed=finished)

    def export_started(self) -> None:
        self.bars.update(self.study_task, description="best model")
        if self.step_task is not None:
            self.bars.update(self.step_task, visible=False)
        if self.trial_task is not None:
            self.bars.update(self.trial_task, visible=False)
