"""Spec problems located by file and TOML key path, collected and raised together."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from criteria.errors import CriteriaError, render_value

__all__ = ["SpecError", "SpecProblem"]

_MISSING = object()


@dataclass
class SpecProblem:
    """One problem in a spec file, located by its TOML key path."""

    key: str
    message: str
    given: Any = _MISSING
    allowed: str = ""
    hint: str = ""

    def render(self, file: str) -> str:
        where = f"{file}: {self.key}" if self.key else file
        lines = [f"{where}: {self.message}"]
        if self.given is not _MISSING:
            lines.append(f"    given:   {render_value(self.given)}")
        if self.allowed:
            lines.append(f"    allowed: {self.allowed}")
        if self.hint:
            lines.append(f"    hint:    {self.hint}")
        return "\n".join(lines)


@dataclass
class SpecError(CriteriaError):
    """A spec file failed validation; holds every problem found."""

    file: str
    problems: list[SpecProblem] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        count = len(self.problems)
        head = f"{self.file} is not a valid spec ({count} problem{'s' if count != 1 else ''}):"
        return "\n".join([head, *(p.render(self.file) for p in self.problems)])
