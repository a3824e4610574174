"""Errors meant for users: each says what was wrong, where, and how to fix it.

The CLI prints a :class:`CriteriaError` as its message and exits non-zero: no traceback. Layers
subclass it where they locate problems their own way (:class:`criteria.spec.errors.SpecError`
by TOML key path, :class:`criteria.data.corpus.DataError` by file, row and column).
"""

from __future__ import annotations

import difflib
from typing import Any, Iterable


class CriteriaError(Exception):
    """Base of every error whose message is written for the user."""


class CriteriaWarning(UserWarning):
    """Something works but not as well as it could, said to the user once (the CLI prints it as one
    ``warning:`` line), e.g. bf16 asked of a CPU that emulates it."""


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
