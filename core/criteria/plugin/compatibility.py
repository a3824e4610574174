"""Compatibility between plugins of different kinds: what a plugin requires or excludes.

A plugin declares, by kind and name, the plugins it works only with and those it never works with::

    class ScheduleFreeAdamW(OptimizerPlugin):
        requires_plugins = {"scheduler": ("constant",)}   # it schedules itself

    class MyPeft(PeftPlugin):
        excludes_plugins = {"head": ("pooler",)}          # it replaces the pooler

The relation is symmetric: two plugins conflict when either one's declaration rules the other
out, whichever of them declares it. The study's search space offers only combinations without a
conflict (:mod:`criteria.spec.choices`), and a spec that fixes conflicting plugins is an error.
"""

from __future__ import annotations

from typing import Any

from criteria.errors import did_you_mean
from criteria.plugin.base import Plugin
from criteria.plugin.kinds import KINDS

__all__ = ["conflict", "declaration_problems"]


def conflict(a: type[Plugin], b: type[Plugin]) -> str | None:
    """Why plugins ``a`` and ``b`` cannot be used together, or None when they can."""
    if a.kind == b.kind:
        return None
    for this, other in ((a, b), (b, a)):
        wanted = this.requires_plugins.get(other.kind)
        if wanted is not None and other.name not in wanted:
            return f"{this.kind} {this.name!r} requires {other.kind} {_either(wanted)}"
        if other.name in this.excludes_plugins.get(other.kind, ()):
            return f"{this.kind} {this.name!r} excludes {other.kind} {other.name!r}"
    return None


def declaration_problems(plugin_cls: type[Plugin]) -> list[str]:
    """What is wrong with a plugin's ``requires_plugins`` / ``excludes_plugins`` (empty: fine)."""
    kinds = [kind.name for kind in KINDS]
    problems = []
    for attribute in ("requires_plugins", "excludes_plugins"):
        declared: Any = getattr(plugin_cls, attribute)
        if not hasattr(declared, "items"):
            problems.append(f"`{attribute}` must map a kind to plugin names, e.g. {{\"scheduler\": (\"constant\",)}}")
            continue
        for kind, names in declared.items():
            if kind not in kinds:
                problems.append(f"`{attribute}` names unknown kind {kind!r}{did_you_mean(str(kind), kinds)}; "
                                f"kinds: {', '.join(kinds)}")
            elif kind == plugin_cls.kind:
                problems.append(f"`{attribute}` names its own kind {kind!r}: a trial uses one {kind} at a time")
            elif isinstance(names, str) or not all(isinstance(name, str) for name in names):
                problems.append(f"`{attribute}[{kind!r}]` must be a tuple of plugin names, not {names!r}")
            elif attribute == "requires_plugins" and not names:
                problems.append(f"`requires_plugins[{kind!r}]` is empty: no {kind} could ever be used with it")
    return problems


def _either(names: Any) -> str:
    quoted = [repr(name) for name in sorted(names)]
    return quoted[0] if len(quoted) == 1 else "one of " + ", ".join(quoted)
