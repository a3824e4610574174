"""Search ranges that plugin config fields declare, and the field factories that declare them.

A field keeps two things apart:

* its *valid bounds*: what validation accepts (pydantic ``ge``/``le``, a ``Literal``, ...);
* its *default search range*: what a study searches when the spec says nothing. It must lie
  inside the bounds, and a spec may replace it by any range that also lies inside them.

Plugin authors write::

    class Config(PluginConfig):
        lr: float = FloatParam(1e-4, ge=1e-7, le=1e-1, search=(1e-6, 5e-5), log=True)
        activation: Literal["relu", "gelu"] = ChoiceParam("gelu")
        nesterov: bool = BoolParam(False)

This module stays import-light (no optuna): a range only calls ``trial.suggest_*``.
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass
from typing import Any, Literal, Sequence, Union

from pydantic import Field
from pydantic.fields import FieldInfo

__all__ = [
    "BoolParam",
    "Categorical",
    "ChoiceParam",
    "FloatParam",
    "FloatRange",
    "IntParam",
    "IntRange",
    "SearchRange",
    "declared_range",
    "choice_label",
]


def _fmt(value: float) -> str:
    return f"{value:g}"


@dataclass(frozen=True)
class FloatRange:
    """A continuous range, optionally log-scaled or stepped."""

    low: float
    high: float
    log: bool = False
    step: float | None = None

    def suggest(self, trial: Any, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=self.log, step=self.step)

    def endpoints(self) -> tuple[float, float]:
        return (self.low, self.high)

    def contains(self, value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and self.low <= value <= self.high

    def check(self) -> str | None:
        """Return why this range is malformed, or None."""
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            return "low and high must be finite numbers"
        if self.low > self.high:
            return f"low ({_fmt(self.low)}) is greater than high ({_fmt(self.high)})"
        if self.log and self.low <= 0:
            return "a log-scaled range needs low > 0"
        if self.log and self.step is not None:
            return "a range cannot be both log-scaled and stepped"
        if self.step is not None and self.step <= 0:
            return "step must be positive"
        return None

    def describe(self) -> str:
        shape = "loguniform" if self.log else "uniform"
        step = f", step={_fmt(self.step)}" if self.step is not None else ""
        return f"{shape}({_fmt(self.low)}, {_fmt(self.high)}{step})"

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "float", "low": self.low, "high": self.high, "log": self.log}
        if self.step is not None:
            out["step"] = self.step
        return out


@dataclass(frozen=True)
class IntRange:
    """An integer range, optionally log-scaled or stepped."""

    low: int
    high: int
    log: bool = False
    step: int = 1

    def suggest(self, trial: Any, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, log=self.log, step=self.step)

    def endpoints(self) -> tuple[int, int]:
        return (self.low, self.high)

    def contains(self, value: Any) -> bool:
        return (isinstance(value, int) and not isinstance(value, bool) and self.low <= value <= self.high
                and (value - self.low) % self.step == 0)

    def check(self) -> str | None:
        if self.low > self.high:
            return f"low ({self.low}) is greater than high ({self.high})"
        if self.log and self.low <= 0:
            return "a log-scaled range needs low > 0"
        if self.log and self.step != 1:
            return "a log-scaled integer range must have step 1"
        if self.step < 1:
            return "step must be a positive integer"
        return None

    def describe(self) -> str:
        shape = "int-loguniform" if self.log else "int"
        step = f", step={self.step}" if self.step != 1 else ""
        return f"{shape}({self.low}, {self.high}{step})"

    def as_dict(self) -> dict[str, Any]:
        return {"type": "int", "low": self.low, "high": self.high, "log": self.log, "step": self.step}


@dataclass(frozen=True)
class Categorical:
    """A choice among listed values. ``choices=None`` means every value the annotation allows
    (the members of a ``Literal``, or ``False``/``True`` for a bool), resolved by ``declared_range``."""

    choices: tuple[Any, ...] | None

    def suggest(self, trial: Any, name: str) -> Any:
        # Optuna stores only None/bool/int/float/str; other values (tuples such as Adam's betas)
        # are offered by a readable label and mapped back.
        labels = {choice_label(c): c for c in self.choices or ()}
        return labels[trial.suggest_categorical(name, list(labels))]

    def endpoints(self) -> tuple[Any, ...]:
        return tuple(self.choices or ())

    def contains(self, value: Any) -> bool:
        return choice_label(value) in {choice_label(c) for c in self.choices or ()}

    def check(self) -> str | None:
        if not self.choices:
            return "the list of choices is empty"
        labels = [choice_label(c) for c in self.choices]
        if len(set(labels)) != len(labels):
            return "the list of choices has duplicates"
        return None

    def describe(self) -> str:
        return "choice(" + ", ".join(str(choice_label(c)) for c in self.choices or ()) + ")"

    def as_dict(self) -> dict[str, Any]:
        return {"type": "categorical", "choices": [choice_label(c) for c in self.choices or ()]}


SearchRange = Union[FloatRange, IntRange, Categorical]


def choice_label(value: Any) -> Any:
    """The value Optuna stores for a categorical choice."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(str(choice_label(v)) for v in value) + ")"
    return str(value)


# --- field factories -----------------------------------------------------------------------


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


def annotation_choices(annotation: Any) -> tuple[Any, ...] | None:
    """Every value a ``Literal`` or ``bool`` annotation admits (``Optional`` adds ``None``)."""
    if annotation is bool:
        return (False, True)
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return tuple(typing.get_args(annotation))
    if origin is Union or str(origin) == "types.UnionType":
        values: list[Any] = []
        for arg in typing.get_args(annotation):
            if arg is type(None):
                values.append(None)
                continue
            sub = annotation_choices(arg)
            if sub is None:
                return None
            values.extend(sub)
        return tuple(values)
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
