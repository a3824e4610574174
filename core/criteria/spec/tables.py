"""Reading a spec's parameter tables: ``lr = 3e-5`` freezes a value, ``lr = {low = .., high = ..}``
or ``{choices = [...]}`` searches a range, checked against the field's valid bounds. Problems are
collected with their TOML key path, never raised one by one.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from criteria.errors import did_you_mean, render_value
from criteria.plugin.fields import Param, coerce, error_message, params_of, range_error
from criteria.plugin.ranges import Categorical, FloatRange, IntRange, SearchRange
from criteria.spec.errors import SpecProblem
from criteria.spec.space import ConfigSpace

__all__ = ["build_config_space"]

_RANGE_KEYS = {"low", "high", "log", "step"}


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
        coerced, error = coerce(config_cls, key, given)
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
        try:
            config_cls(**space.fixed)
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                problems.append(SpecProblem(
                    prefix, f"invalid combination for {owner}: {error_message(error)}",
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
            coerced, error = coerce(config_cls, param.name, value)
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


def _example(param: Param) -> str:
    declared = param.declared
    if isinstance(declared, Categorical):
        return "{choices = " + render_value(list(declared.choices or ())) + "}"
    if isinstance(declared, (FloatRange, IntRange)):
        log = ", log = true" if declared.log else ""
        return f"{{low = {render_value(declared.low)}, high = {render_value(declared.high)}{log}}}"
    return render_value(param.default)
