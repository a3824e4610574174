"""``criteria study ...``: inspect a study from its storage and its output folder."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from criteria.cli.app import SpecArg, console, open_spec, study_app
from criteria.cli.runs import print_summary


@study_app.command("status")
def study_status(
    spec: Path = SpecArg,
    output: Optional[Path] = typer.Option(None, "--output", "-o",
                                          help="The study's output folder (default: outputs/<study>)."),
) -> None:
    """Progress of a running or finished study, read from its storage, and the disk it takes."""
    from criteria.study.runner import summarize
    from criteria.study.storage import load_study

    loaded = open_spec(spec)
    study = load_study(loaded, create=False)
    print_summary(summarize(study, loaded, 0.0, False, None), loaded.study.metric)
    print_disk_usage(output or Path("outputs") / loaded.study.name)


def print_disk_usage(output: Path) -> None:
    """The disk the study's output folder takes, by part, and the shared cache's."""
    from rich.table import Table

    from criteria.study.disk import disk_usage, human_bytes

    usage = disk_usage(output)
    table = Table(title=f"disk used: {human_bytes(usage.total)} in {output}", title_justify="left",
                  show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_column()
    notes = {"kept models": f"{usage.kept_models} trial(s) keep their model",
             "trial reports": f"{usage.reports} report(s)"}
    for part, size in usage.parts.items():
        if size or part in notes:
            table.add_row(part, human_bytes(size), notes.get(part, ""))
    table.add_row("cache", human_bytes(sum(usage.cache.values())),
                  "token ids and frozen-layer states, shared by every study here (CRITERIA_CACHE_DIR)")
    console.print(table)


@study_app.command("schema")
def study_schema(
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the schema here (default: print it)."),
) -> None:
    """The JSON Schema of the per-trial reports a study writes (reports/trial-<n>.json)."""
    import json

    from criteria.files import atomic_output
    from criteria.study.reports import report_schema

    text = json.dumps(report_schema(), indent=2) + "\n"
    if output is None:
        console.print_json(text)
        return
    with atomic_output(output, "schema file") as handle:
        handle.write(text)
    console.print(f"wrote {output}")
