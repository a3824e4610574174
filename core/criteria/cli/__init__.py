"""The ``criteria`` command line (typer + rich): one module per group of commands.

Listing and inspecting commands must stay fast, so nothing here imports torch, transformers, peft,
optuna or mlflow at module level; commands that train import them when they run. Each command
loads the registry once (:func:`criteria.cli.app.registry`) and passes it down.

Imports every layer below it; nothing in the package imports it.
"""

from __future__ import annotations

import sys
import warnings

from rich.text import Text

from criteria.cli import dashboard, plugins, runs, specs, study  # noqa: F401  (they register their commands)
from criteria.cli.app import INTERRUPTED_EXIT, INTERRUPTED_MESSAGE, app, err_console
from criteria.cli.plugins import plugins_list
from criteria.errors import CriteriaError, CriteriaWarning

__all__ = ["app", "main"]


def _plugins_list_args(argv: list[str]) -> dict | None:
    """``plugins_list``'s arguments when ``argv`` is a plain ``plugins list`` command, else None.

    typer coerces every option that is not a flag through pydantic, which costs more than
    answering from the listing cache; so the plain forms skip typer's parsing. Anything else
    (``--help``, a typo, an unusual spelling) goes through typer as usual.
    """
    if argv[:2] != ["plugins", "list"]:
        return None
    args: dict = {"as_json": False, "kind": None, "refresh": False}
    rest = argv[2:]
    while rest:
        arg = rest.pop(0)
        if arg in ("--json", "--refresh"):
            args["as_json" if arg == "--json" else "refresh"] = True
        elif arg in ("--kind", "-k") and rest and not rest[0].startswith("-"):
            args["kind"] = rest.pop(0)
        elif arg.startswith("--kind=") and len(arg) > len("--kind="):
            args["kind"] = arg[len("--kind="):]
        else:
            return None
    return args


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    # Only criteria's own: a library that forces its warnings through ("always") stays quiet.
    if issubclass(category, CriteriaWarning):
        err_console.print(Text("warning: ", style="bold yellow") + Text(str(message)), highlight=False,
                          soft_wrap=True)


def _quiet_warnings() -> None:
    """criteria's own warnings as one ``warning:`` line each; other libraries' warnings (deprecations,
    notes on optional kernels) say nothing a user can act on, so they are silenced unless the user
    asked for warnings (``python -W`` or ``PYTHONWARNINGS``)."""
    if sys.warnoptions:
        return
    warnings.simplefilter("ignore")
    warnings.simplefilter("default", CriteriaWarning)
    warnings.showwarning = _show_warning


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors print as messages, never as tracebacks (exit status 2); Ctrl-C
    prints one line (exit status 130). ``argv`` defaults to the command line."""
    args = sys.argv[1:] if argv is None else argv
    with warnings.catch_warnings():  # the filters are the command's own, restored after it
        _quiet_warnings()
        try:
            listing_args = _plugins_list_args(args)
            if listing_args is not None:
                plugins_list(**listing_args)
                return
            app(args=args, prog_name="criteria")
        except CriteriaError as exc:
            err_console.print(Text("error: ", style="bold red") + Text(str(exc)), highlight=False, soft_wrap=True)
            sys.exit(2)
        except KeyboardInterrupt:
            err_console.print(INTERRUPTED_MESSAGE)
            sys.exit(INTERRUPTED_EXIT)

