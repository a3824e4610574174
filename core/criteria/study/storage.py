"""Where a study lives: its Optuna storage (a SQLite file here by default), opened or created
with the spec's sampler and pruner, and checked against what the spec optimises."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from criteria.errors import CriteriaError
from criteria.spec.load import Spec
from criteria.study.tracking import redact

__all__ = ["DEFAULT_STORAGE_FILE", "METRICS_ATTR", "load_study", "storage_url"]

DEFAULT_STORAGE_FILE = "criteria-studies.db"
METRICS_ATTR = "criteria.metrics"  # the study's metric names, in the order of its directions


def storage_url(spec: Spec) -> str:
    return spec.study.storage or f"sqlite:///{Path.cwd() / DEFAULT_STORAGE_FILE}"


def load_study(spec: Spec, *, create: bool = True) -> Any:
    import optuna

    url = storage_url(spec)
    sampler = pruner = None
    if create:  # built outside the storage errors below, so a plugin's own error keeps its message
        sampler = _build_study_plugin(spec.sampler, seed=spec.study.seed)
        pruner = _build_study_plugin(spec.pruner, registry=spec.registry)
    # One metric: created exactly as single-objective studies always were.
    objectives = ({"directions": list(spec.study.directions)} if spec.study.multi_objective
                  else {"direction": spec.study.direction})
    try:
        if not create:
            study = optuna.load_study(study_name=spec.study.name, storage=url)
        else:
            study = optuna.create_study(
                study_name=spec.study.name, storage=url, load_if_exists=True, sampler=sampler, pruner=pruner,
                **objectives,
            )
    except KeyError:
        raise CriteriaError(f"no study named {spec.study.name!r} in {redact(url)}; run `criteria run` first") from None
    except Exception as exc:  # storage URL errors come from SQLAlchemy with the URL in them
        raise CriteriaError(f"cannot open the study storage {redact(url)}: {type(exc).__name__}") from None
    _check_objectives(study, spec, url)
    return study


def _check_objectives(study: Any, spec: Spec, url: str) -> None:
    """A resumed study must optimise what the spec says: Optuna keeps the stored directions, and
    the metric names label every value."""
    stored = [d.name.lower() for d in study.directions]
    metrics = study.user_attrs.get(METRICS_ATTR)
    wanted = list(spec.study.directions)
    if stored != wanted or (metrics is not None and metrics != list(spec.study.metrics)):
        what = ", ".join(f"{m} ({d})" for m, d in zip(metrics or ["?"] * len(stored), stored))
        raise CriteriaError(
            f"study {spec.study.name!r} in {redact(url)} optimises {what}, but the spec asks for "
            f"{', '.join(f'{m} ({d})' for m, d in zip(spec.study.metrics, wanted))}; give the study another "
            "[study] name (or storage) to optimise something else"
        )
    if metrics is None:
        study.set_user_attr(METRICS_ATTR, list(spec.study.metrics))


def _build_study_plugin(plugin: Any, **kwargs: Any) -> Any:
    try:
        return plugin.build(**kwargs)
    except (ValueError, RuntimeError, KeyError) as exc:
        raise CriteriaError(f"{plugin.kind} {plugin.name!r} cannot be built: {exc}") from None
