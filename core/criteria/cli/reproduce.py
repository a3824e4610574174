"""``criteria reproduce``: train a recorded trial again and compare its numbers with the record."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from criteria.cli.app import SpecArg, app, console, open_spec
from criteria.cli.progress import study_progress

#: The exit status when the reproduction differs from the record by more than the tolerance.
MISMATCH_EXIT = 1


@app.command()
def reproduce(
    spec: Path = SpecArg,
    trial: Optional[int] = typer.Option(None, "--trial", "-t", min=0, help="The trial number to reproduce."),
    run_id: Optional[str] = typer.Option(None, "--run-id", help="Or the MLflow run id of the trial."),
    tolerance: float = typer.Option(0.005, "--tolerance", min=0.0,
                                    help="Largest difference allowed for any metric (0.005: half a point)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o",
                                          help="The study's output folder, where its trial reports are "
                                               "(default: outputs/<study>; else the trial's MLflow run)."),
) -> None:
    """Retrain a trial's configuration with its seed and report the differences from the recorded
    metrics; exits with status 1 when one exceeds the tolerance."""
    from criteria.study.reproduce import find_trial, reproduce_trial

    loaded = open_spec(spec)
    recorded = find_trial(loaded, trial, run_id)
    console.print(f"reproducing trial {recorded.number} of study {loaded.study.name!r}", highlight=False)
    with study_progress(console, loaded.study.metric) as progress:
        result = reproduce_trial(loaded, recorded, tolerance=tolerance,
                                 output=output or Path("outputs") / loaded.study.name, progress=progress)
    console.print(deltas_table(result))
    largest = result.largest
    where = result.report_source or "no trial report found: objective and fold values only"
    line = (f"{len(result.compared)} numbers compared ({where}); largest difference "
            f"{abs(largest.delta):.2g} ({largest.name}); tolerance {tolerance:g}; {result.seconds:.0f} s")
    if result.holds:
        console.print(f"[green]reproduced[/]: {line}", highlight=False)
        return
    console.print(f"[red]not reproduced[/]: {len(result.exceeded)} number(s) differ by more than the tolerance. {line}",
                  highlight=False)
    raise typer.Exit(MISMATCH_EXIT)


def deltas_table(result, shown: int = 12) -> Table:
    """The objective and fold values, then the largest of the other differences."""
    table = Table(title=f"trial {result.trial}: recorded against reproduced", title_justify="left")
    for column in ("number", "recorded", "reproduced", "difference"):
        table.add_column(column, justify="left" if column == "number" else "right")
    head = [d for d in result.deltas if not d.name.startswith("fold ") or " epoch " not in d.name]
    rest = sorted((d for d in result.compared if d not in head), key=lambda d: -abs(d.delta))[:shown]
    for delta in head + rest:
        style = "red" if delta.delta is not None and abs(delta.delta) > result.tolerance else None
        table.add_row(delta.name, _cell(delta.recorded), _cell(delta.reproduced),
                      "-" if delta.delta is None else f"{delta.delta:+.2g}", style=style)
    others = len(result.compared) - len(head) - len(rest)
    if others > 0:
        table.caption = f"{others} more, each within {max((abs(d.delta) for d in rest), default=0):.2g}"
    return table


def _cell(value) -> str:
    return "-" if value is None else f"{value:.6f}"
