"""Config fields that declare their bounds and default search range, and reading them back.

A field keeps two things apart:

* its *valid bounds*: what validation accepts (pydantic ``ge``/``le``, a ``Literal``, ...);
* its *default search range*: what a study searches when the spec says nothing. It must lie
  inside the bounds, and a spec may replace it by any range that also lies inside them.

Plugin authors write::

    class Config(PluginConfig):
        lr: float = FloatParam(1e-4, ge=1e-7, le=1e-1, search=(1e-6, 5e-5), log=True)
        activation: Literal["relu", "gelu"] = ChoiceParam("gelu")
        nesterov: bool = BoolParam(False)

The same mechanism serves the core's own sections (``[train]``). Reading side: :func:`params_of`
lists a model's fields with their declared ranges, :func:`coerce` checks one value alone,
:func:`range_error` a range, :func:`contract_errors` a whole plugin ``Config``.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any, Sequence

from pydantic import BaseModel, Field, ValidationError
from pydantic.fields import FieldInfo

from criteria.plugin.base import PluginConfig
from criteria.plugin.ranges import Categorical, FloatRange, IntRange, SearchRange, annotation_choices

__all__ = [
    "BoolParam", "ChoiceParam", "FloatParam", "IntParam", "Param", "bounds_text", "coerce",
    "contract_errors", "declared_range", "error_message", "params_of", "range_error",
]


def _declare(field: FieldInfo, search: SearchRange | None) -> FieldInfo:
    if search is not None:
        field.metadata.append(search)
    return field


def FloatParam(
    default: float,
    *,
    ge: float | None = None,
    le: float | None = None,
    gt: float | None = None,
    lt: float | None = None,
    search: tuple[float, float] | None = None,
    log: bool = False,
    step: float | None = None,
    description: str | None = None,
) -> Any:
    """A float field with valid bounds and, if ``search`` is given, a default search range."""
    field = Field(default, ge=ge, le=le, gt=gt, lt=lt, description=description)
    return _declare(field, FloatRange(*search, log=log, step=step) if search else None)


def IntParam(
    default: int,
    *,
    ge: int | None = None,
    le: int | None = None,
    search: tuple[int, int] | None = None,
    log: bool = False,
    step: int = 1,
    description: str | None = None,
) -> Any:
    """An int field with valid bounds and, if ``search`` is given, a default search range."""
    field = Field(default, ge=ge, le=le, description=description)
    return _declare(field, IntRange(*search, log=log, step=step) if search else None)


def ChoiceParam(
    default: Any,
    *,
    search: Sequence[Any] | None = None,
    searchable: bool = True,
    description: str | None = None,
    **constraints: Any,
) -> Any:
    """A categorical field. Valid values come from the annotation (``Literal[...]``, a tuple
    type, ...). The default search covers ``search`` if given, else every ``Literal`` member;
    ``searchable=False`` declares no default search (the spec may still ask for one)."""
    field = Field(default, description=description, **constraints)
    if not searchable:
        return field
    return _declare(field, Categorical(tuple(search) if search is not None else None))


def BoolParam(default: bool, *, searchable: bool = True, description: str | None = None) -> Any:
    """A boolean field; searched over False/True unless ``searchable=False``."""
    field = Field(default, description=description)
    return _declare(field, Categorical((False, True)) if searchable else None)


def declared_range(field: FieldInfo) -> SearchRange | None:
    """The default search range a config field declares, with open choices resolved."""
    for item in field.metadata:
        if isinstance(item, Categorical) and item.choices is None:
            return Categorical(annotation_choices(field.annotation))
        if isinstance(item, (FloatRange, IntRange, Categorical)):
            return item
    return None




def bounds_text(field: FieldInfo) -> str:
    """A short human description of what a field accepts, e.g. ``1e-07 <= x <= 0.1``."""
    choices = annotation_choices(field.annotation)
    if choices is not None:
        return "one of " + ", ".join(repr(c) for c in choices)
    args = typing.get_args(field.annotation)
    if typing.get_origin(field.annotation) is tuple and len(args) == 2 and args[1] is Ellipsis:
        choices = annotation_choices(args[0])
        if choices is not None:  # e.g. the study's metrics: one name or a list of names
            return "one or a list of " + ", ".join(repr(c) for c in choices)
    parts = []
    for item in field.metadata:
        for attr, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            value = getattr(item, attr, None)
            if value is not None:
                parts.append(f"{op} {value:g}" if isinstance(value, (int, float)) else f"{op} {value}")
    name = getattr(field.annotation, "__name__", None) or str(field.annotation).replace("typing.", "")
    return f"{name} " + ", ".join(parts) if parts else f"any {name}"


# --- reading declared fields -------------------------------------------------------------


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


def error_message(error: Any) -> str:
    """A pydantic error's message as a user reads it: without pydantic's "Value error, " prefix."""
    return str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")


def coerce(config_cls: type[BaseModel], name: str, value: Any) -> tuple[Any, str | None]:
    """``(validated value, None)``, or ``(None, why it is invalid)`` for field ``name`` alone.

    The value is checked against its own field's rules; a rule across fields (checked against the
    other fields' defaults) does not reject it: callers check the values together afterwards.
    """
    try:
        return getattr(config_cls(**{name: value}), name), None
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        mine = [e for e in errors if e["loc"][:1] == (name,)]
        if mine or any(e["loc"] for e in errors):
            return None, error_message((mine or errors)[0])
    # Only a model-level rule failed: validate the field on its own.
    from pydantic import TypeAdapter

    field = config_cls.model_fields[name]
    try:
        return TypeAdapter(typing.Annotated[field.annotation, field]).validate_python(value), None
    except ValidationError as exc:
        return None, error_message(exc.errors(include_url=False)[0])


def range_error(config_cls: type[BaseModel], name: str, search: SearchRange) -> str | None:
    """Why ``search`` is not a valid search range for field ``name``, or None.

    A range is valid when it is well formed and every endpoint (or choice) is a valid value, i.e.
    it lies inside the field's bounds.
    """
    problem = search.check()
    if problem:
        return problem
    for value in search.endpoints():
        _, problem = coerce(config_cls, name, value)
        if problem:
            what = "choice" if isinstance(search, Categorical) else "bound"
            return f"{what} {value!r} is outside the valid values ({problem})"
    return None


def contract_errors(config_cls: Any) -> list[str]:
    """What is wrong with a config class as a plugin ``Config`` (empty when it is fine)."""
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
    return f"{loc}: {error_message(error)}" if loc else error_message(error)
