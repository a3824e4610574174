"""Reading a study spec (TOML) into validated sections and a search space.

Every problem is collected, located by file and TOML key path, and raised together as one
:class:`~criteria.errors.SpecError`; nothing here lets a traceback reach the user.

A plugin-kind section either fixes a plugin or searches several::

    [optimizer]
    use = ["adamw", "lion"]          # default: every available plugin of the kind
    [optimizer.adamw]
    lr = {low = 1e-5, high = 1e-4}   # narrowed (or moved) range, inside the field's bounds
    weight_decay = 0.01              # frozen
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from criteria.engine.config import PretrainConfig, TrainConfig
from criteria.errors import CriteriaError, did_you_mean
from criteria.plugin.base import Plugin
from criteria.plugin.compatibility import conflict
from criteria.plugin.fields import error_message, params_of
from criteria.plugin.kinds import KINDS, Kind
from criteria.plugin.registry import Registry
from criteria.spec.choices import PluginChoices
from criteria.spec.errors import SpecError, SpecProblem
from criteria.spec.schema import CORE_SECTIONS, SEARCHABLE_SECTIONS, DataSection, ModelSection, StudySection
from criteria.spec.space import ConfigSpace, KindSpace, SearchSpace
from criteria.spec.tables import build_config_space

# [train] and [pretrain] are read apart: their fields may be searched, like a plugin's.
_FIXED_SECTIONS = {name: model for name, model in CORE_SECTIONS.items() if name not in SEARCHABLE_SECTIONS}
_KIND_KEYS = {"use", "search_params"}


@dataclass(frozen=True)
class Spec:
    """A validated spec: core sections, the per-trial search space and the study-level plugins,
    with the registry they were resolved against (every later lookup uses that one)."""

    path: Path
    raw: dict[str, Any]
    study: StudySection
    data: DataSection
    model: ModelSection
    space: SearchSpace
    study_plugins: dict[str, Plugin]
    registry: Registry

    @property
    def sampler(self) -> Plugin:
        return self.study_plugins["sampler"]

    @property
    def pruner(self) -> Plugin:
        return self.study_plugins["pruner"]


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; a missing file, bad encoding or bad syntax becomes a :class:`SpecError`."""
    if not path.is_file():
        raise CriteriaError(f"spec file not found: {path}. Check the path (it is relative to {Path.cwd()}).")
    try:
        return tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise SpecError(str(path), [SpecProblem(
            "", f"the file is not UTF-8 text (byte {exc.start})", hint="save it as UTF-8"
        )]) from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(str(path), [SpecProblem(
            "", f"not valid TOML: {exc}",
            hint="check quotes around strings, '=' between key and value, and [section] headers",
        )]) from None


def load_spec(path: str | Path, registry: Registry) -> Spec:
    """Read and validate a spec file against ``registry``'s plugins."""
    path = Path(path)
    return parse_spec(read_toml(path), path, registry)


def parse_spec(raw: dict[str, Any], path: Path, registry: Registry) -> Spec:
    problems: list[SpecProblem] = []
    kinds = {kind.name: kind for kind in KINDS}
    known = [*CORE_SECTIONS, *kinds]
    for key in raw:
        if key not in known:
            problems.append(SpecProblem(
                key, f"unknown section [{key}]{did_you_mean(key, known)}",
                allowed=", ".join(known),
            ))

    sections: dict[str, BaseModel] = {}
    for name, model in _FIXED_SECTIONS.items():
        table = raw.get(name, {})
        if not isinstance(table, dict):
            problems.append(SpecProblem(name, f"[{name}] must be a table", given=table,
                                        hint=f"write a [{name}] header followed by key = value lines"))
            table = {}
        try:
            sections[name] = model(**table)
        except ValidationError as exc:
            problems.extend(_pydantic_problems(exc, name, model, table))
            sections[name] = model.model_construct()

    train_table = raw.get("train", {})
    if not isinstance(train_table, dict):
        problems.append(SpecProblem("train", "[train] must be a table", given=train_table))
        train_table = {}
    train = build_config_space(
        TrainConfig, train_table, prefix="train", search_declared=False, allow_search=True,
        problems=problems, owner="[train]",
    )
    pretrain = _pretrain_space(raw, path, problems)
    problems.extend(_stage_problems(raw))

    study_section = sections["study"]
    multi_objective = isinstance(study_section, StudySection) and study_section.multi_objective
    per_trial: dict[str, KindSpace] = {}
    study_plugins: dict[str, Plugin] = {}
    for kind in KINDS:
        kind_space = _kind_space(kind, raw.get(kind.name), registry, problems, multi_objective)
        if kind_space is None:
            continue
        if kind.per_trial:
            per_trial[kind.name] = kind_space
        elif not any(p.key.startswith(kind.name) for p in problems):  # else its problems are reported
            study_plugins[kind.name] = kind_space.default()

    if not problems:
        problems.extend(_compatibility_problems(raw, per_trial, study_plugins))
    space = SearchSpace(train, per_trial, context=tuple(study_plugins.values()), pretrain=pretrain)
    if multi_objective and not problems:
        problems.extend(_multi_objective_problems(study_section, study_plugins, registry))
    if isinstance(study_section, StudySection) and not problems:
        problems.extend(_enqueue_problems(study_section, space))
    sampler = study_plugins.get("sampler")
    if sampler is not None and not problems:
        for message in sampler.space_problems(space.dimensions()):
            problems.append(SpecProblem("sampler.use", message, given=sampler.name,
                                        hint="fix the parameters it names in the spec, or use another sampler"))
    if problems:
        raise SpecError(str(path), problems)
    return Spec(
        path=path, raw=raw, study=sections["study"], data=sections["data"],  # type: ignore[arg-type]
        model=sections["model"], space=space,  # type: ignore[arg-type]
        study_plugins=study_plugins, registry=registry,
    )


def _pretrain_space(raw: dict[str, Any], path: Path, problems: list[SpecProblem]) -> ConfigSpace | None:
    """The ``[pretrain]`` section's space (None without the section), its corpus resolved against
    the spec's folder and checked to be a file."""
    if "pretrain" not in raw:
        return None
    table = raw["pretrain"]
    if not isinstance(table, dict):
        problems.append(SpecProblem("pretrain", "[pretrain] must be a table", given=table,
                                    hint="write a [pretrain] header followed by key = value lines"))
        return None
    space = build_config_space(PretrainConfig, table, prefix="pretrain", search_declared=False, allow_search=True,
                               problems=problems, owner="[pretrain]")
    for key in ("corpus", "text_column"):
        if key in space.searched:
            problems.append(SpecProblem(f"pretrain.{key}", f"{key} cannot be searched", given=table[key],
                                        hint=f"give one value, e.g. {key} = \"{'domain.txt' if key == 'corpus' else 'text'}\""))
            del space.searched[key]
    corpus = space.fixed.get("corpus")
    if corpus is not None:
        resolved = (path.parent / corpus).expanduser().resolve()
        if not resolved.is_file():
            problems.append(SpecProblem(
                "pretrain.corpus", f"the pretraining corpus {resolved} is not a file", given=str(corpus),
                hint="name a text file (one document per line) or a CSV file, relative to the spec file's folder",
            ))
        space.fixed["corpus"] = resolved
    elif not space.fixed.get("tapt", True) and "tapt" not in space.searched:
        problems.append(SpecProblem(
            "pretrain", "[pretrain] has nothing to pretrain on: no corpus, and tapt = false", given=table,
            hint='name a corpus (corpus = "domain.txt"), or set tapt = true to pretrain on the training posts',
        ))
    return space


def _stage_problems(raw: dict[str, Any]) -> list[SpecProblem]:
    """A kind that only serves a stage (masking strategies serve [pretrain]) set in a spec
    without that stage's section does nothing: say so rather than ignore it."""
    return [SpecProblem(kind.name, f"[{kind.name}] chooses the {kind.title.lower()} of the [{kind.stage}] stage, "
                        f"and this spec has no [{kind.stage}] section", given=raw[kind.name],
                        hint=f"add a [{kind.stage}] section, or remove [{kind.name}]")
            for kind in KINDS if kind.stage is not None and kind.name in raw and kind.stage not in raw]


def _compatibility_problems(raw: dict[str, Any], per_trial: dict[str, KindSpace],
                            study_plugins: dict[str, Plugin]) -> list[SpecProblem]:
    """Plugins that require or exclude one another (:mod:`criteria.plugin.compatibility`).

    A plugin the spec names in a ``use`` that no valid combination can include is an error (so a
    spec fixing incompatible plugins fails here, before any training); one the spec did not name
    (``use`` left to its default: every available plugin) is left out of the search quietly.
    Drops those from ``per_trial`` in place."""
    problems = []
    fixed = list(study_plugins.values())
    for i, plugin in enumerate(fixed):
        for other in fixed[i + 1:]:
            reason = conflict(type(plugin), type(other))
            if reason:
                problems.append(SpecProblem(f"{other.kind}.use", f"{reason}, and [{plugin.kind}] uses {plugin.name!r}",
                                            given=other.name, hint=f"choose another {other.kind} or {plugin.kind}"))
    choices = PluginChoices({name: [info.cls for info, _ in ks.options.values()] for name, ks in per_trial.items()},
                            context=[type(plugin) for plugin in fixed])
    usable = choices.usable()
    for name, kind_space in per_trial.items():
        named = _named_in_use(raw.get(name))
        for option, (info, _) in list(kind_space.options.items()):
            if option in usable[name]:
                continue
            if option not in named and usable[name]:
                del kind_space.options[option]
                continue
            hint = (f"allow a plugin it works with, or remove {option!r} from {name}.use" if option in named
                    else f"name in [{name}] use the {name}s that work with the plugins the spec fixes")
            problems.append(SpecProblem(
                f"{name}.use", f"{name} {option!r} cannot be used with the plugins this spec allows: "
                f"{choices.why_unusable(name, info.cls)}", given=option, hint=hint,
            ))
    return problems


def _named_in_use(section: Any) -> set[str]:
    """The plugin names a kind's section lists in ``use`` (or its ``kind = "name"`` shorthand)."""
    use = section.get("use") if isinstance(section, dict) else section
    if isinstance(use, str):
        return {use}
    return {name for name in use if isinstance(name, str)} if isinstance(use, list) else set()


def _enqueue_problems(study: StudySection, space: SearchSpace) -> list[SpecProblem]:
    """Each starting configuration must name searched parameters, with values inside their ranges."""
    dimensions = dict(space.dimensions())
    problems = []
    for number, params in enumerate(study.enqueue):
        for name, value in params.items():
            key = f"study.enqueue.{number}.{name}"
            search = dimensions.get(name)
            if search is None:
                problems.append(SpecProblem(
                    key, f"{name!r} is not a searched parameter{did_you_mean(name, list(dimensions))}",
                    hint="`criteria space SPEC` lists the searched parameters; fixed values belong in their own section",
                ))
            elif not search.contains(value):
                problems.append(SpecProblem(key, "the value is outside the searched range", given=value,
                                            allowed=search.describe()))
    return problems


_SINGLE_OBJECTIVE_ONLY = {
    "sampler": "it optimises a single objective",
    "pruner": "Optuna takes no intermediate values in a multi-objective study, so no trial can be pruned",
}


def _multi_objective_problems(study: StudySection, study_plugins: dict[str, Plugin],
                              registry: Registry) -> list[SpecProblem]:
    """The study-level plugins that cannot serve a study with several objectives (each plugin
    declares it: ``multi_objective``)."""
    objectives = f"study.metric names {len(study.metrics)} metrics ({', '.join(study.metrics)})"
    problems = []
    for kind_name, plugin in study_plugins.items():
        if getattr(plugin, "multi_objective", True):
            continue
        able = sorted((name for name, info in registry.plugins(kind_name).items()
                       if getattr(info.cls, "multi_objective", False) and info.availability()),
                      key=lambda name: -registry.plugins(kind_name)[name].cls.priority)
        why = _SINGLE_OBJECTIVE_ONLY.get(kind_name, "it supports a single objective only")
        suggestion = f'[{kind_name}] use = "{able[0]}"' if able else f"a {kind_name} that supports several objectives"
        problems.append(SpecProblem(
            f"{kind_name}.use", f"{kind_name} {plugin.name!r} cannot serve a multi-objective study: {objectives}, "
            f"and {why}", given=plugin.name, allowed=", ".join(able),
            hint=f'write {suggestion}, or optimise one metric (study.metric = "{study.metric}")',
        ))
    return problems


def _kind_space(kind: Kind, section: Any, registry: Registry, problems: list[SpecProblem],
                multi_objective: bool = False) -> KindSpace | None:
    plugins = registry.plugins(kind)
    if section is None:
        section = {}
    elif isinstance(section, (str, list)):  # shorthand: `optimizer = "adamw"`
        section = {"use": section}
    elif not isinstance(section, dict):
        problems.append(SpecProblem(
            kind.name, f"[{kind.name}] must be a table or a plugin name", given=section,
            hint=f'write [{kind.name}] then use = "{next(iter(plugins), "name")}"',
        ))
        return None

    search_params = section.get("search_params", kind.searched_by_default)
    if not isinstance(search_params, bool):
        problems.append(SpecProblem(f"{kind.name}.search_params", "must be true or false", given=search_params))
        return None
    if search_params and not kind.per_trial:
        problems.append(SpecProblem(
            f"{kind.name}.search_params", f"the {kind.name} is chosen once per study; nothing to search",
            given=search_params, hint="remove search_params",
        ))
        return None

    use = _resolve_use(kind, section.get("use"), registry, problems, multi_objective)
    if use is None:
        return None
    given_use = section.get("use")
    names_given = set([given_use] if isinstance(given_use, str) else given_use or [])

    options = {}
    for name in use:
        table = section.get(name, {})
        if not isinstance(table, dict):
            problems.append(SpecProblem(f"{kind.name}.{name}", "plugin settings must be a table", given=table,
                                        hint=f"write [{kind.name}.{name}] then key = value lines"))
            table = {}
        info = plugins[name]
        space = build_config_space(
            info.cls.Config, table, prefix=f"{kind.name}.{name}", search_declared=search_params,
            allow_search=kind.per_trial, problems=problems, owner=f"{kind.name} {name!r}",
        )
        options[name] = (info, space)

    for key, value in section.items():
        if key in _KIND_KEYS or key in use or key in names_given:
            continue
        if key in plugins:
            problems.append(SpecProblem(
                f"{kind.name}.{key}", f"settings for {kind.name} {key!r}, which is not in {kind.name}.use",
                given=value, allowed=", ".join(use), hint=f"add {key!r} to {kind.name}.use or remove [{kind.name}.{key}]",
            ))
        else:
            candidates = [*plugins, *_KIND_KEYS]
            problems.append(SpecProblem(
                f"{kind.name}.{key}", f"unknown key or {kind.name}{did_you_mean(key, candidates)}",
                given=value, allowed="use, search_params, or a table per plugin: " + ", ".join(plugins),
            ))
    return KindSpace(kind, options)


def _resolve_use(kind: Kind, use: Any, registry: Registry, problems: list[SpecProblem],
                 multi_objective: bool = False) -> list[str] | None:
    plugins = registry.plugins(kind)
    key = f"{kind.name}.use"
    if use is None:
        available = [name for name, info in plugins.items() if info.availability()]
        if not available:
            problems.append(SpecProblem(
                kind.name, f"no {kind.name} plugin is available on this machine",
                hint="run `criteria plugins list` to see why",
            ))
            return None
        # Highest priority first: it is the default when a single configuration is trained. With
        # several objectives, a study-level default that can serve them comes first (no pruning).
        available.sort(key=lambda n: (multi_objective and not getattr(plugins[n].cls, "multi_objective", True),
                                      -plugins[n].cls.priority))
        return available if kind.searched_by_default else available[:1]

    names = [use] if isinstance(use, str) else use
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        problems.append(SpecProblem(key, "must be a plugin name or a list of names", given=use,
                                    allowed=", ".join(plugins)))
        return None
    if not names:
        problems.append(SpecProblem(key, "the list of plugins is empty", given=use, allowed=", ".join(plugins),
                                    hint=f"name at least one {kind.name}, or remove `use` to search all"))
        return None
    if not kind.per_trial and len(names) > 1:
        problems.append(SpecProblem(
            key, f"the {kind.name} is chosen once per study, so name exactly one", given=use,
            allowed=", ".join(plugins), hint=f'use = "{names[0]}"',
        ))
        return None
    valid = []
    for name in names:
        if name in plugins:
            availability = plugins[name].availability()
            if availability:
                valid.append(name)
            else:
                problems.append(SpecProblem(
                    key, f"{kind.name} {name!r} is not available here: {availability.reason}", given=use,
                    hint=f"install what it needs or remove {name!r} from {key}",
                ))
            continue
        broken = registry.broken_plugin(kind.name, name)
        blocked = registry.blocked_plugin(kind.name, name)
        reason = f"; it failed to load from {broken.source}: {broken.reason}" if broken else ""
        if blocked:
            reason = f"; {blocked.source} provides it, but CRITERIA_BLOCK_PLUGINS switches it off"
        problems.append(SpecProblem(
            key, f"unknown {kind.name} {name!r}{did_you_mean(name, plugins)}{reason}", given=use,
            allowed=", ".join(plugins), hint="run `criteria plugins list` to see every plugin",
        ))
    if len(set(names)) != len(names):
        problems.append(SpecProblem(key, "a plugin is listed twice", given=use))
    # Keep checking the valid names' settings so every problem is reported in one go.
    return list(dict.fromkeys(valid)) or None


def _pydantic_problems(exc: ValidationError, section: str, model: type[BaseModel],
                       table: dict[str, Any] | None = None) -> list[SpecProblem]:
    # keyed as the spec spells them (StudySection's `metrics` field is the `metric` key)
    params = {param.field.alias or name: param for name, param in params_of(model).items()}
    problems = []
    for error in exc.errors(include_url=False):
        loc = [str(part) for part in error["loc"]]
        if len(loc) == 2 and loc[1].isdigit() and not isinstance((table or {}).get(loc[0]), list):
            loc = loc[:1]  # one value where a list is also accepted: no index to point at
        key = ".".join([section, *loc])
        field_name = loc[0] if loc else ""
        if error["type"] == "extra_forbidden":
            problems.append(SpecProblem(
                key, f"unknown key {field_name!r} in [{section}]{did_you_mean(field_name, params)}",
                given=error["input"], allowed=", ".join(params),
            ))
            continue
        param = params.get(field_name)
        allowed = param.bounds if param else ""
        default = param.default if param else None
        if isinstance(default, tuple) and len(default) == 1:  # ("macro_f1",) is written metric = "macro_f1"
            default = default[0]
        hint = f"the default is {default!r}" if default is not None else ""
        problems.append(SpecProblem(key, error_message(error), given=error.get("input"), allowed=allowed, hint=hint))
    return problems
