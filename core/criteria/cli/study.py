"""``criteria study status`` (a study read from its storage, read-only) and ``criteria export``
(the best model exported on demand)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from criteria.cli.app import SpecArg, app, console, open_spec, study_app
from criteria.cli.runs import print_summary


@study_app.command("status")
def study_status(spec: Path = SpecArg) -> None:
    """Progress of a running or finished study, read from its storage (which it never writes):
    trials per state, running trials with their worker and heartbeat, failures, the best so far."""
    from criteria.cli.workers import print_trials_per_worker
    from criteria.study.status import describe_age, study_status

    loaded = open_spec(spec)
    status = study_status(loaded)
    summary = status.summary
    print_summary(summary, loaded.study.metric)
    if summary.counts.get("waiting"):
        console.print(f"{summary.counts['waiting']} trial(s) queued (enqueued or to be run again)", highlight=False)
    if status.running:
        table = Table(title="running trials", title_justify="left")
        for column in ("trial", "worker", "started", "last heartbeat"):
            table.add_column(column)
        for trial in status.running:
            beat = describe_age(trial.heartbeat_age)
            if trial.lost:
                beat += f" (over {status.grace_seconds} s: its worker is lost; the next worker to look runs it again)"
            started = f"{trial.started:%Y-%m-%d %H:%M:%S}" if trial.started else "-"
            table.add_row(str(trial.number), trial.worker, started, beat)
        console.print(table)
    print_trials_per_worker(summary)
    if status.parent_run:
        console.print(f"MLflow parent run: {status.parent_run}", highlight=False)


@app.command("export")
def export(
    spec: Path = SpecArg,
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Plots and best model (default: outputs/<study>)."),
    track: bool = typer.Option(True, help="Log the export to the study's MLflow parent run."),
) -> None:
    """Export the best model of a study so far (as the worker that finishes a study does), here."""
    from criteria.cli.progress import study_progress
    from criteria.study.prepare import prepare_data
    from criteria.study.report import export_best
    from criteria.study.runner import open_tracker
    from criteria.study.storage import load_study

    loaded = open_spec(spec)
    folder = output or Path("outputs") / loaded.study.name
    study = load_study(loaded, create=False, read_only=True)
    data = prepare_data(loaded)
    tracker = open_tracker(loaded, study, data, keep_id=False) if track else None
    with study_progress(console, loaded.study.metric) as progress:
        result = export_best(study, loaded, data, folder, tracker, progress=progress)
    if not (result.folder / "model").is_dir():
        console.print(f"nothing to export yet: study {loaded.study.name!r} has no complete trial "
                      f"(or [study] export = \"none\"); plots in {folder / 'plots'}", highlight=False)
        return
    line = f"best model: [bold]{result.folder}[/]"
    if result.test is not None:
        line += (f"; test macro-F1 {result.test['overall']['macro_f1']:.4f}, TF-IDF + logistic regression "
                 f"{result.baseline_test['overall']['macro_f1']:.4f}")
    console.print(line)
