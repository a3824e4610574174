"""The search space a study samples from, built from the registered plugins and a spec.

Define-by-run: per kind a categorical over the allowed plugins (``optimizer``), then the chosen
plugin's parameters namespaced by kind and plugin (``optimizer.lion.lr``), so conditional spaces
come for free and names never collide. Core knobs live under ``train.``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

from pydantic import BaseModel

from criteria.errors import SpecProblem, did_you_mean, render_value
from criteria.kinds import Kind
from criteria.params import Param, params_of, range_error
from criteria.plugin import Plugin
from criteria.ranges import Categorical, FloatRange, IntRange, SearchRange, choice_label
from criteria.registry import PluginInfo

_RANGE_KEYS = {"low", "high", "log", "step"}


@dataclass
class ConfigSpace:
    """One config model: values the spec froze and ranges to search, the rest at defaults."""

    config_cls: type[BaseModel]
    prefix: str
    fixed: dict[str, Any] = field(default_factory=dict)
    searched: dict[str, SearchRange] = field(default_factory=dict)

    def suggest(self, trial: Any) -> BaseModel:
        values = dict(self.fixed)
        for name, search in self.searched.items():
            values[name] = search.suggest(trial, f"{self.prefix}.{name}")
        return self.config_cls(**values)

    def default(self) -> BaseModel:
        """The configuration with nothing searched: frozen values, then declared defaults."""
        return self.config_cls(**self.fixed)

    def dimensions(self) -> Iterator[tuple[str, SearchRange]]:
        for name, search in self.searched.items():
            yield f"{self.prefix}.{name}", search


@dataclass
class KindSpace:
    """The plugins a study may use for one kind, each with its own config space."""

    kind: Kind
    options: dict[str, tuple[PluginInfo, ConfigSpace]]

    def suggest(self, trial: Any) -> Plugin:
        names = list(self.options)
        name = trial.suggest_categorical(self.kind.name, names) if len(names) > 1 else names[0]
        info, space = self.options[name]
        return info.cls(space.suggest(trial))

    def default(self) -> Plugin:
        info, space = next(iter(self.options.values()))
        return info.cls(space.default())

    def dimensions(self) -> Iterator[tuple[str, SearchRange]]:
        if len(self.options) > 1:
            yield self.kind.name, Categorical(tuple(self.options))
        for _, space in self.options.values():
            yield from space.dimensions()


@dataclass(frozen=True)
class TrialConfig:
    """One point of the search space: the core knobs and one plugin per kind."""

    train: BaseModel
    plugins: dict[str, Plugin]

    def params(self) -> dict[str, Any]:
        """A flat, namespaced view for logging (``optimizer``, ``optimizer.lion.lr``, ...)."""
        flat: dict[str, Any] = {f"train.{k}": v for k, v in self.train.model_dump().items()}
        for kind, plugin in self.plugins.items():
            flat[kind] = plugin.name
            for key, value in plugin.config.model_dump().items():
                flat[f"{kind}.{plugin.name}.{key}"] = choice_label(value)
        return flat


@dataclass
class SearchSpace:
    """Everything a trial samples: the train knobs and each per-trial kind."""

    train: ConfigSpace
    kinds: dict[str, KindSpace]

    def suggest(self, trial: Any) -> TrialConfig:
        """Sample one configuration from an ``optuna.Trial`` (define-by-run)."""
        train = self.train.suggest(trial)
        return TrialConfig(train, {name: ks.suggest(trial) for name, ks in self.kinds.items()})

    def default(self) -> TrialConfig:
        """The configuration a single training run uses: first listed plugin, frozen values, defaults."""
        return TrialConfig(self.train.default(), {name: ks.default() for name, ks in self.kinds.items()})

    def dimensions(self) -> list[tuple[str, SearchRange]]:
        dims = list(self.train.dimensions())
        for kind_space in self.kinds.values():
            dims.extend(kind_space.dimensions())
        return dims


# --- reading a spec's parameter table ---------------------------------------------------------


def build_config_space(
    config_cls: type[BaseModel],
    table: dict[str, Any],
    *,
    prefix: str,
    search_declared: bool,
    allow_search: bool,
    problems: list[SpecProblem],
    owner: str,
) -> ConfigSpace:
    """Turn a spec table (``lr = 3e-5`` freezes, ``lr = {low = .., high = ..}`` searches) into a
    :class:`ConfigSpace`. Unnamed fields are searched over their declared range when
    ``search_declared``; otherwise they keep their defaults. Problems are appended, not raised."""
    params = params_of(config_cls)
    space = ConfigSpace(config_cls, prefix)
    for key, given in table.items():
        path = f"{prefix}.{key}"
        param = params.get(key)
        if param is None:
            problems.append(SpecProblem(
                path, f"{owner} has no parameter {key!r}{did_you_mean(key, params)}",
                given=given, allowed=", ".join(params) or "no parameters",
                hint=f"run `criteria plugins show` to see {owner}'s parameters" if "." in prefix else "",
            ))
            continue
        if isinstance(given, dict):
            if not allow_search:
                problems.append(SpecProblem(
                    path, f"{owner} is chosen once per study, so its parameters cannot be searched",
                    given=given, allowed=f"a single value ({param.bounds})",
                    hint=f"fix it, e.g. {key} = {render_value(param.default)}",
                ))
                continue
            search = _parse_range(config_cls, param, given, path, problems)
            if search is not None:
                space.searched[key] = search
            continue
        coerced, error = _coerce(config_cls, key, given)
        if error:
            problems.append(SpecProblem(
                path, f"invalid value for {owner}'s {key!r}: {error}", given=given,
                allowed=param.bounds, hint=f"the default is {render_value(param.default)}",
            ))
            continue
        space.fixed[key] = coerced
    if space.fixed and not any(p.key.startswith(prefix + ".") for p in problems):
        # Each value passed alone; now check them together (cross-field rules, e.g. SGD's
        # nesterov needs momentum).
        from pydantic import ValidationError

        try:
            config_cls(**space.fixed)
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                problems.append(SpecProblem(
                    prefix, f"invalid combination for {owner}: {error['msg']}",
                    given={k: v for k, v in table.items() if k in space.fixed},
                ))
    if search_declared:
        for name, param in params.items():
            if name not in table and param.declared is not None:
                space.searched[name] = param.declared
    return space


def _parse_range(
    config_cls: type[BaseModel], param: Param, given: dict[str, Any], path: str, problems: list[SpecProblem]
) -> SearchRange | None:
    declared = param.declared
    example = _example(param)
    if "choices" in given:
        extra = set(given) - {"choices"}
        if extra or not isinstance(given["choices"], list):
            problems.append(SpecProblem(
                path, "a choice range is a table with only a `choices` list",
                given=given, hint=f"write {param.name} = {example}",
            ))
            return None
        choices = []
        for value in given["choices"]:
            coerced, error = _coerce(config_cls, param.name, value)
            if error:
                problems.append(SpecProblem(
                    f"{path}.choices", f"choice {render_value(value)} is not a valid value: {error}",
                    given=given["choices"], allowed=param.bounds,
                ))
                return None
            choices.append(coerced)
        search: SearchRange = Categorical(tuple(choices))
    else:
        unknown = set(given) - _RANGE_KEYS
        if unknown or not {"low", "high"} <= set(given):
            wrong = ", ".join(sorted(unknown))
            problems.append(SpecProblem(
                path,
                f"unknown range key(s) {wrong}" if unknown else "a range needs both `low` and `high`",
                given=given, allowed="{low, high[, log][, step]} or {choices = [...]}",
                hint=f"for example {param.name} = {example}",
            ))
            return None
        integer = isinstance(declared, IntRange) or (declared is None and param.field.annotation is int)
        try:
            if integer:
                search = IntRange(
                    int(given["low"]), int(given["high"]),
                    log=bool(given.get("log", getattr(declared, "log", False))),
                    step=int(given.get("step", 1)),
                )
                if any(isinstance(given[k], float) and not float(given[k]).is_integer() for k in ("low", "high")):
                    raise ValueError("this parameter takes integers")
            else:
                inherit_log = declared.log if isinstance(declared, FloatRange) else False
                step = given.get("step")
                search = FloatRange(
                    float(given["low"]), float(given["high"]),
                    log=bool(given.get("log", inherit_log and step is None)),
                    step=float(step) if step is not None else None,
                )
        except (TypeError, ValueError) as exc:
            problems.append(SpecProblem(
                path, f"range bounds must be numbers ({exc})", given=given,
                hint=f"for example {param.name} = {example}",
            ))
            return None
    error = range_error(config_cls, param.name, search)
    if error:
        problems.append(SpecProblem(
            path, f"invalid search range for {param.name!r}: {error}",
            given=given, allowed=param.bounds,
            hint=f"a spec may narrow or move a range but must stay inside the bounds; e.g. {param.name} = {example}",
        ))
        return None
    return search


def _coerce(config_cls: type[BaseModel], name: str, value: Any) -> tuple[Any, str | None]:
    from pydantic import ValidationError

    try:
        return getattr(config_cls(**{name: value}), name), None
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        mine = [e for e in errors if e["loc"][:1] == (name,)]
        if mine or any(e["loc"] for e in errors):
            return None, (mine or errors)[0]["msg"]
    # Only a model-level rule failed, against the other fields' defaults: the value itself is
    # fine. The fixed values are checked together later.
    from typing import Annotated

    from pydantic import TypeAdapter

    field = config_cls.model_fields[name]
    return TypeAdapter(Annotated[field.annotation, field]).validate_python(value), None


def _example(param: Param) -> str:
    declared = param.declared
    if isinstance(declared, Categorical):
        return "{choices = " + render_value(list(declared.choices or ())) + "}"
    if isinstance(declared, (FloatRange, IntRange)):
        log = ", log = true" if declared.log else ""
        return f"{{low = {render_value(declared.low)}, high = {render_value(declared.high)}{log}}}"
    return render_value(param.default)
