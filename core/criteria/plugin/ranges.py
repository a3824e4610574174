"""Search ranges: a float or int range (optionally log-scaled or stepped) or a list of choices.

A config field declares one as its default search range (:mod:`criteria.plugin.fields`); a spec
may replace it. A range suggests a value from an ``optuna.Trial`` and describes itself for
listings; this module stays import-light (no optuna, no pydantic).
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass
from typing import Any, Literal, Union

__all__ = ["Categorical", "FloatRange", "IntRange", "SearchRange", "annotation_choices", "choice_label"]


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
    (the members of a ``Literal``, or ``False``/``True`` for a bool), resolved by :func:`criteria.plugin.fields.declared_range`."""

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
