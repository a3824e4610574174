"""``criteria validate`` and ``criteria space``: check a spec and show its search space."""

from __future__ import annotations

from pathlib import Path

from criteria.cli.app import SpecArg, app, console, open_spec
from criteria.errors import render_value


@app.command()
def validate(spec: Path = SpecArg) -> None:
    """Check a spec against the schema and the installed plugins, and its data files and model, without
    training or loading a model."""
    from criteria.spec.inputs import check_inputs

    loaded = open_spec(spec)
    inputs = check_inputs(loaded)
    dims = len(loaded.space.dimensions())
    console.print(f"[green]ok[/]: {spec} is valid ({dims} search dimensions).", highlight=False)
    console.print(f"data: {inputs.data}", highlight=False)
    console.print(f"model: {inputs.model}", highlight=False)
    if inputs.pretraining:
        console.print(f"pretraining corpus: {inputs.pretraining}", highlight=False)


@app.command()
def space(spec: Path = SpecArg) -> None:
    """Print the resolved search space as a tree: kind, plugin, parameter, distribution."""
    from rich.tree import Tree

    from criteria.spec.choices import choice_parameter

    loaded = open_spec(spec)
    search = loaded.space
    dims = search.dimensions()
    tree = Tree(f"[bold]search space of {spec}[/]: {len(dims)} dimensions")
    study = tree.add("[bold]study[/] (fixed for the whole study)")
    for kind_name, plugin in loaded.study_plugins.items():
        node = study.add(f"{kind_name} = [cyan]{plugin.name}[/]")
        for key, value in plugin.config.model_dump().items():
            node.add(f"{key} = {render_value(value)}")
    _add_config_space(tree.add("[bold]train[/]"), search.train)
    if search.pretrain is not None:
        _add_config_space(tree.add("[bold]pretrain[/] (continued pretraining; \\[masking] below chooses its "
                                   "strategy in the trials where it runs)"), search.pretrain)
    offered = search.choices.offered()
    for name, kind_space in search.kinds.items():
        names = list(kind_space.options)
        label = f"[bold]{name}[/]"
        label += f" = choice({', '.join(names)})" if len(names) > 1 else f" = [cyan]{names[0]}[/] (fixed)"
        node = tree.add(label)
        for subset in offered[name]:
            if list(subset) != names:  # plugins chosen before this kind rule some out (requires/excludes)
                shown = f"{choice_parameter(name, subset, names)} ~ choice({', '.join(subset)})" if len(subset) > 1 \
                    else f"{name} = [cyan]{subset[0]}[/]"
                node.add(f"{shown} [dim](when the plugins chosen before allow only these)[/]")
        for name, (info, config_space) in kind_space.options.items():
            _add_config_space(node.add(f"[cyan]{name}[/] [dim]({info.source})[/]"), config_space)
    console.print(tree)


def _add_config_space(node, config_space) -> None:
    for name, search in config_space.searched.items():
        node.add(f"{config_space.prefix}.{name} ~ [magenta]{search.describe()}[/]")
    for name, value in config_space.fixed.items():
        node.add(f"{config_space.prefix}.{name} = {render_value(value)} [dim](frozen)[/]")
