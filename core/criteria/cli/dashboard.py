"""``criteria dashboard``: a live view of a study in the browser (optuna-dashboard)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from criteria.cli.app import SpecArg, app, console, open_spec


@app.command()
def dashboard(
    spec: Path = SpecArg,
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8080, help="Port to listen on (0: any free port)."),
) -> None:
    """Serve optuna-dashboard on the spec's study storage and print its URL; Ctrl-C stops it."""
    from criteria.study.dashboard import open_dashboard

    loaded = open_spec(spec)
    server = open_dashboard(loaded, host, port)
    where = server.study_url or server.url
    note = "" if server.study_url else f" (study {loaded.study.name!r} is not in it yet; it appears once it runs)"
    console.print(f"dashboard of {server.storage}{note}", soft_wrap=True, highlight=False)
    console.print(f"serving on {where}", soft_wrap=True, highlight=False, markup=False)
    sys.stdout.flush()  # a supervising process reads the URL from a pipe
    try:
        server.serve()
    except KeyboardInterrupt:
        console.print("dashboard stopped")
