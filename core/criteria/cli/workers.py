"""``criteria run --workers N``: N worker processes on this machine, their output in one stream,
one summary and one export at the end."""

from __future__ import annotations

import sys
from pathlib import Path

from rich.table import Table

from criteria.cli.app import console
from criteria.errors import CriteriaError


def run_with_local_workers(spec_file: Path, spec, count: int, first_index: int, output: Path, track: bool,
                           export: bool) -> None:
    """Start ``count`` workers (indices from ``first_index``), each a ``criteria run`` of the same
    spec, wait for them, then print the summary and export the best model once."""
    from criteria.cli.progress import study_progress
    from criteria.cli.runs import print_summary
    from criteria.study.report import conclude
    from criteria.study.runner import run_local_workers
    from criteria.study.workers import local_workers

    workers = local_workers(count, first_index * count)
    console.print(f"{count} workers: " + "; ".join(w.describe() for w in workers), highlight=False)

    def command(worker) -> list[str]:
        # No URL or password on the command line: each worker reads the spec and its environment.
        return [sys.executable, "-m", "criteria.cli", "run", str(spec_file), "--worker-index", str(worker.index),
                "--output", str(output), "--spawned", *([] if track else ["--no-track"])]

    def on_line(worker, line: str) -> None:
        console.print(f"w{worker.index}| {line}", markup=False, highlight=False, soft_wrap=True)
        console.file.flush()  # a line as it comes, also into a log file

    study, summary, data, tracker, codes = run_local_workers(spec, workers, command, on_line, track=track)
    export_result = None
    if summary.export_here:
        with study_progress(console, spec.study.metric) as progress:
            export_result = conclude(study, spec, data, output, tracker, progress=progress, export=export)
    print_summary(summary, spec.study.metric, export_result)
    print_trials_per_worker(summary)
    failed = {index: code for index, code in codes.items() if code != 0}
    if failed and not summary.complete:
        raise CriteriaError(
            "worker(s) " + ", ".join(f"w{i} (exit code {c})" for i, c in failed.items()) + " stopped before the "
            "study had its trials (their output above says why); run the same command to resume"
        )
    for index, code in failed.items():
        console.print(f"worker w{index} exited with code {code}; the others finished the study", highlight=False)


def print_trials_per_worker(summary) -> None:
    if len(summary.trials_per_worker) < 2:
        return
    table = Table()
    table.add_column("worker")
    table.add_column("finished trials", justify="right")
    for worker, count in summary.trials_per_worker.items():
        table.add_row(worker, str(count))
    console.print(table)
