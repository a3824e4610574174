"""The typer application, its consoles, and what every command shares: the registry (loaded
once per command, at its entry point) and reading a spec against it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from criteria import __version__

if TYPE_CHECKING:  # pragma: no cover
    from criteria.plugin.registry import Registry
    from criteria.spec.load import Spec

app = typer.Typer(
    name="criteria",
    help="Fine-tune transformer criterion classifiers and search their hyperparameters, from plugins.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
plugins_app = typer.Typer(help="List and inspect the installed plugins.", no_args_is_help=True)
app.add_typer(plugins_app, name="plugins")
study_app = typer.Typer(help="Inspect studies.", no_args_is_help=True)
app.add_typer(study_app, name="study")

console = Console()
err_console = Console(stderr=True)

SpecArg = typer.Argument(..., help="Study spec (TOML).", show_default=False)

#: Ctrl-C: the shell's convention for a process ended by SIGINT, and what to do next.
INTERRUPTED_EXIT = 130
INTERRUPTED_MESSAGE = "interrupted; run the same command to resume"


def registry() -> Registry:
    """The registry of this command: every installed plugin distribution, loaded once."""
    from criteria.plugin.registry import get_registry

    return get_registry()


def open_spec(path: Path) -> Spec:
    """The spec at ``path``, validated against this command's registry."""
    from criteria.spec.load import load_spec

    return load_spec(path, registry())


def _version(value: bool) -> None:
    if value:
        console.print(f"criteria {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """criteria: criterion classifiers, tuned with Optuna, built from plugins."""
