"""The ``criteria`` command line (typer + rich).

Listing and inspecting commands must stay fast, so nothing here imports torch, transformers, peft,
optuna or mlflow; commands that train import them when they run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from criteria import __version__
from criteria.errors import CriteriaError, render_value

# The registry, the kinds and pydantic load inside the commands that need them: `plugins list`
# usually answers from its cache (criteria.listing_cache) without importing any of them.

app = typer.Typer(
    name="criteria",
    help="Fine-tune transformer criterion classifiers and search their hyperparameters, from plugins.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
plugins_app = typer.Typer(help="List and inspect the installed plugins.", no_args_is_help=True)
app.add_typer(plugins_app, name="plugins")

console = Console()
err_console = Console(stderr=True)

SpecArg = typer.Argument(..., help="Study spec (TOML).", show_default=False)


def _version(value: bool) -> None:
    if value:
        console.print(f"criteria {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """criteria: criterion classifiers, tuned with Optuna, built from plugins."""


# --- plugins ---------------------------------------------------------------------------------


@plugins_app.command("list")
def plugins_list(
    as_json: bool = typer.Option(False, "--json", help="Print JSON for machines."),
    kind: Optional[str] = typer.Option(None, "--kind", "-k", help="Only this kind (optimizer, scheduler, ...)."),
    refresh: bool = typer.Option(
        False, "--refresh", help="Import every plugin and check availability again, instead of using the cache."
    ),
) -> None:
    """Every plugin by kind: summary, source distribution, and whether it runs here."""
    from criteria.listing_cache import load_listing

    listing = load_listing(refresh=refresh)
    kinds = [(name, title) for name, title in listing.kinds if kind in (None, name)]
    if kind is not None and not kinds:
        raise CriteriaError(f"unknown kind {kind!r}; kinds: {', '.join(name for name, _ in listing.kinds)}")
    if as_json:
        payload = {
            "plugins": [record for name, _ in kinds for record in listing.of_kind(name)],
            "broken": listing.broken,
        }
        print(json.dumps(payload, indent=2))
        return
    for name, title in kinds:
        records = listing.of_kind(name)
        table = Table(title=f"{title} ({len(records)})", title_justify="left", expand=False)
        table.add_column("name", style="bold cyan", no_wrap=True)
        table.add_column("summary")
        table.add_column("source", no_wrap=True)
        table.add_column("available here")
        for record in records:
            status = "[green]yes[/]" if record["available"] else f"[yellow]no[/]: {record['reason']}"
            source = f"{record['distribution']} {record['version']}"
            table.add_row(record["name"], record["summary"], source, status)
        console.print(table)
    _print_broken(listing.broken)


def _print_broken(broken: list[dict]) -> None:
    if not broken:
        return
    table = Table(title=f"Broken plugins ({len(broken)})", title_justify="left", title_style="bold red")
    table.add_column("source", no_wrap=True)
    table.add_column("what")
    table.add_column("reason", style="red")
    for entry in broken:
        table.add_row(f"{entry['distribution']} {entry['version']}", entry["what"], entry["reason"])
    console.print(table)


@plugins_app.command("show")
def plugins_show(
    name: str = typer.Argument(..., help="Plugin name, e.g. lion."),
    kind: Optional[str] = typer.Option(None, "--kind", "-k", help="Kind, when several kinds share the name."),
) -> None:
    """A plugin's config fields: default, valid bounds and default search range."""
    from criteria.params import params_of
    from criteria.registry import get_registry

    registry = get_registry()
    matches = [info for info in registry.find(name) if kind in (None, info.kind.name)]
    if not matches:
        if kind:
            registry.get(kind, name)  # raises with "did you mean"
        known = sorted({info.name for info in registry})
        from criteria.errors import did_you_mean

        raise CriteriaError(f"no plugin named {name!r}{did_you_mean(name, known)}. Run `criteria plugins list`.")
    if len(matches) > 1:
        kinds = ", ".join(info.kind.name for info in matches)
        raise CriteriaError(f"several plugins are named {name!r} (kinds: {kinds}); add --kind KIND")
    info = matches[0]
    availability = info.availability()
    console.print(f"[bold cyan]{info.kind.name} {info.name}[/]: {info.cls.summary}")
    console.print(f"source: {info.source}")
    if info.cls.requires.describe():
        console.print(f"requires: {info.cls.requires.describe()}")
    console.print("available here: " + ("[green]yes[/]" if availability else f"[yellow]no[/]: {availability.reason}"))
    params = params_of(info.cls.Config)
    if not params:
        console.print("no parameters")
        return
    table = Table(title="parameters", title_justify="left")
    for column in ("name", "default", "valid bounds", "default search", "description"):
        table.add_column(column)
    for param in params.values():
        search = param.declared.describe() if param.declared else "[dim]fixed unless the spec searches it[/]"
        table.add_row(param.name, render_value(param.default), param.bounds, search, param.field.description or "")
    console.print(table)


@plugins_app.command("reference")
def plugins_reference(
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write here instead of printing."),
    distribution: list[str] = typer.Option(
        ["criteria"], "--distribution", "-d", help="Document plugins of this distribution (repeatable)."
    ),
) -> None:
    """Markdown reference of every plugin: summary, requirements, parameters with bounds and ranges."""
    from criteria.reference import render_reference
    from criteria.registry import get_registry

    text = render_reference(get_registry(), distribution)
    if output is None:
        print(text)
        return
    output.write_text(text, encoding="utf-8")
    console.print(f"wrote {output}")


# --- specs -----------------------------------------------------------------------------------


@app.command()
def validate(spec: Path = SpecArg) -> None:
    """Check a spec against the schema and the installed plugins, without running anything."""
    from criteria.spec import load_spec

    loaded = load_spec(spec)
    dims = len(loaded.space.dimensions())
    console.print(f"[green]ok[/]: {spec} is valid ({dims} search dimensions).")


@app.command()
def space(spec: Path = SpecArg) -> None:
    """Print the resolved search space as a tree: kind, plugin, parameter, distribution."""
    from criteria.spec import load_spec

    from rich.tree import Tree

    loaded = load_spec(spec)
    search = loaded.space
    dims = search.dimensions()
    tree = Tree(f"[bold]search space of {spec}[/]: {len(dims)} dimensions")
    study = tree.add("[bold]study[/] (fixed for the whole study)")
    for kind_name, plugin in loaded.study_plugins.items():
        node = study.add(f"{kind_name} = [cyan]{plugin.name}[/]")
        for key, value in plugin.config.model_dump().items():
            node.add(f"{key} = {render_value(value)}")
    _add_config_space(tree.add("[bold]train[/]"), search.train)
    for kind_space in search.kinds.values():
        names = list(kind_space.options)
        label = f"[bold]{kind_space.kind.name}[/]"
        label += f" = choice({', '.join(names)})" if len(names) > 1 else f" = [cyan]{names[0]}[/] (fixed)"
        node = tree.add(label)
        for name, (info, config_space) in kind_space.options.items():
            _add_config_space(node.add(f"[cyan]{name}[/] [dim]({info.source})[/]"), config_space)
    console.print(tree)


def _add_config_space(node, config_space) -> None:
    for name, search in config_space.searched.items():
        node.add(f"{config_space.prefix}.{name} ~ [magenta]{search.describe()}[/]")
    for name, value in config_space.fixed.items():
        node.add(f"{config_space.prefix}.{name} = {render_value(value)} [dim](frozen)[/]")


def _progress():
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    return Progress(SpinnerColumn(), TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False)


@app.command()
def train(
    spec: Path = SpecArg,
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Run folder (default: runs/<study>-<time>)."),
    baseline: bool = typer.Option(True, help="Also score a TF-IDF + logistic-regression baseline on the test posts."),
) -> None:
    """Train one configuration (the spec's frozen values, else plugin defaults) and save a run folder."""
    from datetime import datetime

    from criteria.metrics import metrics_table
    from criteria.spec import load_spec
    from criteria.training import train_from_spec

    loaded = load_spec(spec)
    folder = output or Path("runs") / f"{loaded.study.name}-{datetime.now():%Y%m%d-%H%M%S}"
    config = loaded.space.default()
    console.print("training " + ", ".join(f"{k}=[cyan]{p.name}[/]" for k, p in config.plugins.items()))
    with _progress() as progress:
        result = train_from_spec(loaded, folder, progress=progress, baseline=baseline)
    best = result.fit.best
    console.print(metrics_table(result.validation, title=f"validation, best epoch {result.fit.best_epoch}"))
    if result.test is not None:
        console.print(metrics_table(result.test, title="held-out test posts"))
        line = f"test macro-F1: [bold]{result.test['overall']['macro_f1']:.3f}[/]"
        if result.baseline_test is not None:
            line += f"   TF-IDF + logistic regression: {result.baseline_test['overall']['macro_f1']:.3f}"
        console.print(line)
    scores = ", ".join(f"{best.metrics['overall'][m]:.3f} validation {m}" for m in loaded.study.metrics)
    console.print(f"{spec.name}: {scores}; {result.seconds:.0f} s. Run folder: [bold]{result.folder}[/]")


@app.command()
def predict(
    run_dir: Path = typer.Argument(..., help="A run folder from `criteria train` (or its model/ folder)."),
    input: Path = typer.Option(..., "--input", "-i", help="CSV with columns post_id,text."),
    output: Path = typer.Option(Path("predictions.csv"), "--output", "-o", help="Where to write the scores."),
) -> None:
    """Score every post against every criterion the model was trained on."""
    from criteria.predict import predict_file

    rows = predict_file(run_dir, input, output)
    console.print(f"wrote {rows} rows to [bold]{output}[/]")


@app.command()
def run(
    spec: Path = SpecArg,
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Plots and best model (default: outputs/<study>)."),
    track: bool = typer.Option(True, help="Track the study in MLflow (MLFLOW_TRACKING_URI, else ./mlflow.db)."),
) -> None:
    """Run (or resume) the spec's study: trials, pruning, tracking, best-model export."""
    from criteria.spec import load_spec
    from criteria.study import run_study
    from criteria.study_report import export_best

    loaded = load_spec(spec)
    folder = output or Path("outputs") / loaded.study.name
    with _progress() as progress:
        total = loaded.study.trials
        trials_task = progress.add_task("trials", total=total)

        def on_trial(trial) -> None:
            value = " ".join(f"{v:.4f}" for v in trial.values) if trial.values is not None else "-"
            reason = trial.user_attrs.get("failure_reason", "")
            progress.console.print(f"trial {trial.number}: {trial.state.name.lower()} {value} {reason}".rstrip())
            progress.advance(trials_task)

        def on_epoch(number, epoch) -> None:
            progress.update(trials_task, description=f"trial {number} ep {epoch.epoch}: {epoch.value:.3f}")

        study, summary, data, tracker = run_study(loaded, track=track, on_trial=on_trial, on_epoch=on_epoch,
                                                   output=folder)
        export = None
        if not summary.interrupted:
            progress.update(trials_task, description="best model")
            export = export_best(study, loaded, data, folder, tracker, progress=progress)
            if tracker:
                tracker.finish()
    _print_summary(summary, loaded.study.metric, export)


def _print_summary(summary, metric: str, export=None) -> None:
    """The study's counts, best trial (or with several objectives the Pareto front), outputs."""
    table = Table(title=f"study {summary.name}" + (" (interrupted)" if summary.interrupted else ""),
                  title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    counts = summary.counts
    table.add_row("trials", f"{counts['complete']} complete, {counts['pruned']} pruned, {counts['fail']} failed"
                  + (f", {counts['running']} running" if counts.get("running") else ""))
    if summary.best_value is not None:
        table.add_row(f"best {metric}", f"{summary.best_value:.4f} (trial {summary.best_trial})")
    if summary.front:
        table.add_row("Pareto front", f"{len(summary.front)} trial(s), below; best on {summary.metrics[0]}: "
                                      f"trial {summary.best_trial}, exported")
    if summary.best_trial is not None:
        table.add_row("best configuration", "\n".join(f"{k} = {v}" for k, v in summary.best_params.items()) or "-")
    for number, reason in summary.failures[:5]:
        table.add_row(f"trial {number} failed", reason)
    if export is not None and export.test is not None:
        table.add_row("test macro-F1", f"{export.test['overall']['macro_f1']:.4f} (best model, held-out test posts)")
        table.add_row("baseline", f"{export.baseline_test['overall']['macro_f1']:.4f} (TF-IDF + logistic regression)")
    if summary.seconds:
        table.add_row("time", f"{summary.seconds:.0f} s")
    table.add_row("storage", summary.storage)
    table.add_row("tracking", summary.tracking)
    if export is not None:
        table.add_row("outputs", str(export.folder))
    console.print(table)
    if summary.front:
        console.print(_front_table(summary))
    if summary.interrupted:
        console.print("interrupted: results so far are kept; run the same command again to resume.")


def _front_table(summary, max_params: int = 8) -> Table:
    """The Pareto front: a row per trial (the exported one first), a column per metric, and the
    parameters that set its trials apart (all of them when the front is one trial)."""
    front = summary.front
    table = Table(title=f"Pareto front ({len(front)} of {summary.counts['complete']} complete trials)",
                  title_justify="left")
    table.add_column("trial", justify="right")
    for metric, direction in zip(summary.metrics, summary.directions):
        table.add_column(f"{metric} {'↑' if direction == 'maximize' else '↓'}", justify="right")
    table.add_column("key parameters")
    names = list(dict.fromkeys(name for t in front for name in t.params))
    differing = [n for n in names if len({repr(t.params.get(n)) for t in front}) > 1]
    shown = (differing or names)[:max_params]
    for t in front:
        params = ", ".join(f"{n}={_short(t.params[n])}" for n in shown if n in t.params)
        marker = " *" if t.number == summary.best_trial else ""
        table.add_row(f"{t.number}{marker}", *(f"{v:.4f}" for v in t.values), params or "-")
    table.caption = "* exported. ↑ maximized, ↓ minimized."
    return table


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


study_app = typer.Typer(help="Inspect studies.", no_args_is_help=True)
app.add_typer(study_app, name="study")


@study_app.command("status")
def study_status(spec: Path = SpecArg) -> None:
    """Progress of a running or finished study, read from its storage."""
    from criteria.spec import load_spec
    from criteria.study import load_study, summarize

    loaded = load_spec(spec)
    study = load_study(loaded, create=False)
    _print_summary(summarize(study, loaded, 0.0, False, None), loaded.study.metric)


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


def main() -> None:
    """Entry point: user errors print as messages, never as tracebacks."""
    try:
        listing_args = _plugins_list_args(sys.argv[1:])
        if listing_args is not None:
            plugins_list(**listing_args)
            return
        app()
    except CriteriaError as exc:
        err_console.print(Text("error: ", style="bold red") + Text(str(exc)), highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
