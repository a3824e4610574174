"""Reading and checking the parameters a config model declares (plugin configs and core sections)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from criteria.ranges import Categorical, SearchRange, bounds_text, declared_range


@dataclass(frozen=True)
class Param:
    """One field of a config model with the search range it declares (if any)."""

    name: str
    field: FieldInfo
    declared: SearchRange | None

    @property
    def default(self) -> Any:
        return self.field.get_default(call_default_factory=True)

    @property
    def bounds(self) -> str:
        return bounds_text(self.field)


def params_of(config_cls: type[BaseModel]) -> dict[str, Param]:
    return {
        name: Param(name, field, declared_range(field))
        for name, field in config_cls.model_fields.items()
    }


def value_error(config_cls: type[BaseModel], name: str, value: Any) -> str | None:
    """Why ``value`` is not valid for field ``name`` (checked by the model itself), or None."""
    try:
        config_cls(**{name: value})
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            if error["loc"] and error["loc"][0] == name:
                return error["msg"]
        return exc.errors(include_url=False)[0]["msg"]
    return None


def range_error(config_cls: type[BaseModel], name: str, search: SearchRange) -> str | None:
    """Why ``search`` is not a valid search range for field ``name``, or None.

    A range is valid when it is well formed and every endpoint (or choice) is a valid value, i.e.
    it lies inside the field's bounds.
    """
    problem = search.check()
    if problem:
        return problem
    for value in search.endpoints():
        problem = value_error(config_cls, name, value)
        if problem:
            what = "choice" if isinstance(search, Categorical) else "bound"
            return f"{what} {value!r} is outside the valid values ({problem})"
    return None


def contract_errors(config_cls: Any) -> list[str]:
    """What is wrong with a config class as a plugin ``Config`` (empty when it is fine)."""
    from criteria.plugin import PluginConfig

    if not (isinstance(config_cls, type) and issubclass(config_cls, PluginConfig)):
        return ["its Config must subclass criteria.PluginConfig"]
    if config_cls.model_config.get("extra") != "forbid":
        return ['its Config must forbid unknown keys (model_config extra="forbid")']
    problems = []
    try:
        config_cls()
    except ValidationError as exc:
        problems.append(f"its Config defaults are invalid: {_first_error(exc)}")
        return problems
    for param in params_of(config_cls).values():
        if param.declared is not None:
            problem = range_error(config_cls, param.name, param.declared)
            if problem:
                problems.append(f"field {param.name!r} declares a bad search range: {problem}")
    return problems


def _first_error(exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    loc = ".".join(str(part) for part in error["loc"])
    return f"{loc}: {error['msg']}" if loc else error["msg"]
