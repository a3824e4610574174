"""Errors meant for users: each says what was wrong, where, and how to fix it.

The CLI prints a :class:`CriteriaError` as its message and exits non-zero: no traceback.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Iterable


class CriteriaError(Exception):
    """Base of every error whose message is written for the user."""


def did_you_mean(given: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'lion'?)`` when something close exists, else an empty string."""
    close = difflib.get_close_matches(str(given), list(candidates), n=3, cutoff=0.6)
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(c) for c in close) + "?)"


class UnknownPluginError(CriteriaError):
    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        known = sorted(known)
        self.kind, self.name = kind, name
        super().__init__(
            f"unknown {kind} {name!r}{did_you_mean(name, known)}; "
            f"known {kind}s: {', '.join(known) or 'none'}. "
            "Run `criteria plugins list` to see every plugin and why some are unavailable."
        )


def render_value(value: Any) -> str:
    """A value as the user would write it in TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {render_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(render_value(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


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
