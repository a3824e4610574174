"""The built-in plugins as the plugin tests use them: one registry of the built-in distribution
only (third-party plugins installed in the environment are not what they test), and a maker that
skips with the plugin's own reason where it cannot run."""

from __future__ import annotations

from typing import Any

import pytest

from criteria.registry import Registry

BUILTINS = Registry.from_entry_points(allowed=[])


def make(kind: str, name: str, **config: Any):
    """An instance of a registered plugin (skipped with its reason when it cannot run here)."""
    info = BUILTINS.get(kind, name)
    availability = info.availability()
    if not availability:
        pytest.skip(f"{kind} {name!r}: {availability.reason}")
    return info.cls(info.cls.Config(**config))
