"""``criteria plugins ...``: list, show and document the installed plugins."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from criteria.cli.app import console, plugins_app, registry
from criteria.errors import CriteriaError, render_value

# The registry, the kinds and pydantic load inside the commands that need them: `plugins list`
# usually answers from its cache (criteria.plugin.listing) without importing any of them.


@plugins_app.command("list")
def plugins_list(
    as_json: bool = typer.Option(False, "--json", help="Print JSON for machines."),
    kind: Optional[str] = typer.Option(None, "--kind", "-k", help="Only this kind (optimizer, scheduler, ...)."),
    refresh: bool = typer.Option(
        False, "--refresh", help="Import every plugin and check availability again, instead of using the cache."
    ),
) -> None:
    """Every plugin by kind: summary, source distribution, and whether it runs here."""
    from criteria.plugin.listing import load_listing

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
    from criteria.plugin.fields import params_of

    plugins = registry()
    matches = [info for info in plugins.find(name) if kind in (None, info.kind.name)]
    if not matches:
        if kind:
            plugins.get(kind, name)  # raises with "did you mean"
        known = sorted({info.name for info in plugins})
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
    from criteria.plugin.reference import render_reference
    from criteria.spec.schema import CORE_SECTIONS

    text = render_reference(registry(), distribution, core_sections=CORE_SECTIONS)
    if output is None:
        print(text)
        return
    output.write_text(text, encoding="utf-8")
    console.print(f"wrote {output}")


@plugins_app.command("new")
def plugins_new(
    kind: str = typer.Argument(..., help="Kind of plugin: optimizer, scheduler, peft, head, loss, pruner, sampler, backend."),
    name: str = typer.Argument(..., help="The plugin's name, as specs will write it (e.g. my_sgd)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Package folder (default: ./criteria-NAME)."),
) -> None:
    """Start a plugin package: pyproject with the entry point, a working example plugin, tests, README."""
    from criteria.plugin.scaffold import write_plugin_package

    existing = [info for info in registry().find(name) if info.kind.name == kind]
    if existing:
        raise CriteriaError(f"{kind} {name!r} already exists ({existing[0].source}); a second one would not load. "
                            "Choose another name.")
    package, folder = write_plugin_package(kind, name, output)
    console.print(f"wrote [bold]{folder}[/]: the {kind} [cyan]{name}[/] in {package.package}/__init__.py. Next:",
                  soft_wrap=True)
    for command, why in ((f"pip install -e {folder}", "criteria finds it through its entry point"),
                         (f"criteria plugins list --kind {kind}", f"listed with {package.distribution} 0.1.0"),
                         (f"python -m pytest {folder}", "its contract, then a real run (criteria.testing)")):
        console.print(f"  {command:<48} # {why}", soft_wrap=True, highlight=False, markup=False)
