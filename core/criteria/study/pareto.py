"""Pareto helpers for multi-objective studies: dominance, the front's order, the exported trial."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from criteria.spec.load import Spec

__all__ = ["FrontTrial", "dominates", "exported_trial", "order_front"]


@dataclass
class FrontTrial:
    """A trial on the Pareto front of a multi-objective study."""

    number: int
    values: tuple[float, ...]  # one per metric, in the order of [study] metric
    params: dict[str, Any]


def dominates(a: Sequence[float], b: Sequence[float], directions: Sequence[str]) -> bool:
    """Whether values ``a`` are at least as good as ``b`` on every objective and better on one."""
    signs = [1.0 if d == "maximize" else -1.0 for d in directions]
    at_least = all(s * x >= s * y for s, x, y in zip(signs, a, b))
    return at_least and any(s * x > s * y for s, x, y in zip(signs, a, b))


def order_front(front: Sequence[Any], directions: Sequence[str]) -> list[Any]:
    """Pareto-front trials, best on the first objective first (ties: the earlier trial): the first
    is the one a multi-objective study exports."""
    sign = 1.0 if directions[0] == "maximize" else -1.0
    return sorted(front, key=lambda t: (-sign * t.values[0], t.number))


def exported_trial(study: Any, spec: Spec) -> Any:
    """The trial whose model a study exports: the best trial, or with several objectives the
    Pareto front's best on the first metric. None before any trial completed."""
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    if not spec.study.multi_objective:
        return study.best_trial
    return order_front(study.best_trials, spec.study.directions)[0]
