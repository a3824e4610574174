"""Evaluation metrics for (post, criterion) binary classification.

Every metric is computed by scikit-learn; this module only thresholds probabilities, groups
examples by criterion and formats the results.  A prediction is positive ("met") when
``prob >= threshold``.

Conventions
-----------
* ``zero_division=0`` everywhere: an undefined precision/recall/F1 counts as 0.
* ``macro_f1`` always averages over both classes (labels ``[0, 1]``), even when a group holds
  only one class, so that numbers are comparable between groups.
* ``roc_auc`` and ``pr_auc`` (average precision) are ``nan`` when only one class is present;
  nothing here raises on degenerate input (one class, or no examples at all).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    ConfusionMatrixDisplay,
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    classification_report,
    confusion_matrix,
    f1_score,
    matthews_corrcoef,
    precision_score,
    recall_score,
    roc_auc_score,
)

from criteria.engine.metric_names import METRIC_NAMES, RANKING_METRICS
from criteria.engine.thresholds import Threshold, describe_threshold, thresholds_of

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure
    from rich.table import Table

__all__ = [
    "METRIC_NAMES",
    "RANKING_METRICS",
    "binary_metrics",
    "classification_report_dict",
    "confusion_matrix_figure",
    "per_criterion_f1_figure",
    "evaluate",
    "metrics_table",
    "tune_threshold",
    "tune_thresholds",
]


_LABELS = [0, 1]
_TARGET_NAMES = ["not met", "met"]
_TABLE_COLUMNS = ("macro_f1", "f1", "precision", "recall", "roc_auc", "pr_auc", "mcc", "support", "positives")


# --------------------------------------------------------------------------------------------
# glue
# --------------------------------------------------------------------------------------------

def _as_arrays(labels: Sequence[int], probs: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    raw = np.asarray(labels).reshape(-1)
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    if raw.shape != p.shape:
        raise ValueError(f"labels and probs differ in length: {raw.size} != {p.size}")
    bad = ~np.isin(raw, _LABELS)
    if bad.any():
        raise ValueError(f"labels must be 0 or 1, got {sorted(set(raw[bad].tolist()))[:5]}")
    y = raw.astype(np.int64)
    if np.isnan(p).any():
        raise ValueError("probs contain NaN")
    return y, p


def _predict(p: np.ndarray, threshold: float | np.ndarray) -> np.ndarray:
    return (p >= threshold).astype(np.int64)




@contextmanager
def _quiet() -> Iterator[None]:
    """Silence sklearn's warnings about degenerate inputs (we return 0 / nan for them on purpose)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.filterwarnings("ignore", message=".*y_pred contains classes not in y_true.*")
        warnings.filterwarnings("ignore", message=".*[Oo]nly one class.*")
        warnings.filterwarnings("ignore", message=".*[Nn]o positive class found in y_true.*")
        yield


def _threshold_metric(name: str, y: np.ndarray, pred: np.ndarray) -> float:
    """One threshold-dependent metric, by sklearn."""
    if name == "f1":
        return float(f1_score(y, pred, labels=_LABELS, pos_label=1, average="binary", zero_division=0))
    if name == "macro_f1":
        return float(f1_score(y, pred, labels=_LABELS, average="macro", zero_division=0))
    if name == "precision":
        return float(precision_score(y, pred, labels=_LABELS, pos_label=1, average="binary", zero_division=0))
    if name == "recall":
        return float(recall_score(y, pred, labels=_LABELS, pos_label=1, average="binary", zero_division=0))
    if name == "mcc":
        return float(matthews_corrcoef(y, pred))
    if name == "balanced_accuracy":
        return float(balanced_accuracy_score(y, pred))
    if name == "accuracy":
        return float(accuracy_score(y, pred))
    raise ValueError(f"unknown metric {name!r}; choose from {METRIC_NAMES}")


# --------------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------------

def binary_metrics(labels: Sequence[int], probs: Sequence[float], threshold: float | np.ndarray = 0.5
                   ) -> dict[str, float]:
    """All metrics for one set of examples.

    Returns ``f1`` (positive class), ``macro_f1``, ``precision``, ``recall`` (positive class),
    ``roc_auc``, ``pr_auc`` (average precision), ``mcc``, ``balanced_accuracy``, ``accuracy``,
    the confusion counts ``tn``, ``fp``, ``fn``, ``tp`` (ints), ``support`` (n) and ``positives``
    (number of label-1 examples).  ``roc_auc``/``pr_auc`` are nan when only one class is present;
    with no examples every rate is nan and every count 0.
    """
    y, p = _as_arrays(labels, probs)
    n = int(y.size)
    positives = int(y.sum())
    if n == 0:
        out: dict[str, float] = {name: math.nan for name in METRIC_NAMES}
        out.update(tn=0, fp=0, fn=0, tp=0, support=0, positives=0)
        return out

    pred = _predict(p, threshold)
    with _quiet():
        out = {name: _threshold_metric(name, y, pred) for name in METRIC_NAMES if name not in RANKING_METRICS}
        if 0 < positives < n:
            out["roc_auc"] = float(roc_auc_score(y, p))
            out["pr_auc"] = float(average_precision_score(y, p, pos_label=1))
        else:
            out["roc_auc"] = math.nan
            out["pr_auc"] = math.nan
        tn, fp, fn, tp = (int(v) for v in confusion_matrix(y, pred, labels=_LABELS).ravel())

    ordered: dict[str, float] = {name: out[name] for name in METRIC_NAMES}
    ordered.update(tn=tn, fp=fp, fn=fn, tp=tp, support=n, positives=positives)
    return ordered


def evaluate(labels: Sequence[int], probs: Sequence[float], groups: Sequence[str], threshold: Threshold = 0.5) -> dict:
    """Overall and per-criterion metrics.

    ``groups[i]`` is the criterion id of example ``i``; ``threshold`` is one decision threshold or
    one per criterion id. Returns ``{"overall": binary_metrics(...), "per_group": {criterion_id:
    binary_metrics(...)} (sorted by id), "threshold": threshold}``.
    """
    y, p = _as_arrays(labels, probs)
    g = np.asarray([str(x) for x in groups], dtype=object)
    if g.size != y.size:
        raise ValueError(f"groups and labels differ in length: {g.size} != {y.size}")
    each = thresholds_of(threshold, g.tolist())
    per_group = {}
    for gid in sorted(set(g.tolist())):
        mask = g == gid
        per_group[gid] = binary_metrics(y[mask], p[mask], each[mask] if isinstance(each, np.ndarray) else each)
    shown = {str(k): float(v) for k, v in threshold.items()} if isinstance(threshold, Mapping) else float(threshold)
    return {"overall": binary_metrics(y, p, each), "per_group": per_group, "threshold": shown}


def tune_thresholds(labels: Sequence[int], probs: Sequence[float], groups: Sequence[str], metric: str = "f1",
                    ) -> dict[str, float]:
    """One decision threshold per group (criterion), each tuned on that group's examples (see
    :func:`tune_threshold`); a group with a single class there keeps the threshold tuned on all
    examples, since its own data cannot place one."""
    y, p = _as_arrays(labels, probs)
    g = np.asarray([str(x) for x in groups], dtype=object)
    overall = tune_threshold(y, p, metric)
    out = {}
    for gid in sorted(set(g.tolist())):
        mask = g == gid
        out[gid] = tune_threshold(y[mask], p[mask], metric) if y[mask].min() != y[mask].max() else overall
    return out


def tune_threshold(labels: Sequence[int], probs: Sequence[float], metric: str = "f1", *,
                   max_candidates: int = 512) -> float:
    """The decision threshold in (0, 1) that maximises ``metric`` on these (validation) examples.

    Candidates are the midpoints between consecutive sorted unique probabilities, the two
    outer midpoints (between 0 and the smallest, and between the largest and 1, so "everything
    positive" / "everything negative" are considered), and 0.5.  Ties go to the candidate closest
    to 0.5.  Returns 0.5 if only one class is present (or there are no examples).

    Each candidate is scored with scikit-learn, which costs a few milliseconds; when there are
    more than ``max_candidates`` midpoints, that many are taken at evenly spaced ranks.
    ``roc_auc``/``pr_auc`` do not depend on the threshold and are rejected.
    """
    if metric in RANKING_METRICS:
        raise ValueError(f"{metric!r} does not depend on the threshold; tune one of "
                         f"{tuple(m for m in METRIC_NAMES if m not in RANKING_METRICS)}")
    if metric not in METRIC_NAMES:
        raise ValueError(f"unknown metric {metric!r}; choose from {METRIC_NAMES}")
    y, p = _as_arrays(labels, probs)
    if y.size == 0 or y.min() == y.max():
        return 0.5

    edges = np.concatenate(([0.0], np.unique(np.clip(p, 0.0, 1.0)), [1.0]))
    mids = np.unique((edges[:-1] + edges[1:]) / 2.0)
    mids = mids[(mids > 0.0) & (mids < 1.0)]
    if max_candidates and mids.size > max_candidates:
        idx = np.unique(np.linspace(0, mids.size - 1, int(max_candidates)).round().astype(np.int64))
        mids = mids[idx]
    candidates = np.unique(np.concatenate((mids, [0.5])))

    with _quiet():
        scores = np.array([_threshold_metric(metric, y, _predict(p, t)) for t in candidates])
    best = scores.max()
    tied = candidates[np.isclose(scores, best, rtol=0.0, atol=1e-12)]
    # closest to 0.5; among equally close, the lower one (deterministic)
    return float(tied[np.lexsort((tied, np.abs(tied - 0.5)))[0]])


# --------------------------------------------------------------------------------------------
# reports
# --------------------------------------------------------------------------------------------

def confusion_matrix_figure(labels: Sequence[int], probs: Sequence[float], threshold: float | np.ndarray = 0.5,
                            title: str = "") -> "Figure":
    """A matplotlib Figure (Agg canvas) with sklearn's ConfusionMatrixDisplay.

    The Figure is created without pyplot's figure manager, so it is never kept alive by pyplot
    and needs no ``plt.close``; ``fig.savefig(path)`` works directly.
    """
    import sys

    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    y, p = _as_arrays(labels, probs)
    cm = confusion_matrix(y, _predict(p, threshold), labels=_LABELS)
    from matplotlib import style

    # The default style, whatever another library (Optuna's plots use ggplot) left active.
    with style.context("default"):
        fig = Figure(figsize=(5.0, 4.4), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        ConfusionMatrixDisplay(confusion_matrix=cm, display_labels=_TARGET_NAMES).plot(
            ax=ax, cmap="Blues", values_format="d", colorbar=True)
        ax.grid(False)
        fig.suptitle(title or "confusion matrix")
        shown = "per criterion" if isinstance(threshold, np.ndarray) else f"{threshold:.3f}"
        ax.set_title(f"decision threshold {shown}", fontsize="medium")
        fig.tight_layout()
    return fig


def per_criterion_f1_figure(f1: dict[str, float], baseline: dict[str, float] | None = None,
                            title: str = "") -> "Figure":
    """A horizontal bar chart of the F1 of the met class per criterion (criteria in the given
    order, top to bottom), with a second bar per criterion for ``baseline`` when given. NaN
    (no met example) is drawn as an empty bar with a note."""
    import sys

    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    from matplotlib import style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(f1)
    positions = np.arange(len(names))[::-1]
    height = 0.38 if baseline else 0.7
    with style.context("default"):
        fig = Figure(figsize=(6.4, 0.45 * len(names) + 1.4), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        values = [0.0 if math.isnan(f1[n]) else f1[n] for n in names]
        ax.barh(positions + (height / 2 if baseline else 0), values, height, label="model", color="#1f77b4")
        if baseline:
            base = [0.0 if math.isnan(baseline.get(n, math.nan)) else baseline[n] for n in names]
            ax.barh(positions - height / 2, base, height, label="TF-IDF baseline", color="#bbbbbb")
            ax.legend(loc="lower right", fontsize="small")
        for y, name in zip(positions, names):
            label = "n/a" if math.isnan(f1[name]) else f"{f1[name]:.2f}"
            ax.text(min(values[names.index(name)] + 0.01, 0.93), y + (height / 2 if baseline else 0), label,
                    va="center", fontsize="small")
        ax.set_yticks(positions, names)
        ax.set_xlim(0, 1)
        ax.set_xlabel("F1 (met)")
        ax.set_title(title or "F1 per criterion", fontsize="medium")
        fig.tight_layout()
    return fig


def classification_report_dict(labels: Sequence[int], probs: Sequence[float],
                               threshold: float | np.ndarray = 0.5) -> dict:
    """sklearn ``classification_report(output_dict=True, zero_division=0)`` with target names
    ``["not met", "met"]`` (both classes always listed)."""
    y, p = _as_arrays(labels, probs)
    with _quiet():
        return classification_report(y, _predict(p, threshold), labels=_LABELS, target_names=_TARGET_NAMES,
                                     output_dict=True, zero_division=0)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    v = float(value)
    if math.isnan(v):
        return "-"
    return f"{v:.3f}"


def metrics_table(result: dict, title: str = "metrics") -> "Table":
    """A rich Table of an ``evaluate`` result: one row "overall", then one row per group.

    Columns: group, macro_f1, f1, precision, recall, roc_auc, pr_auc, mcc, support, positives.
    Rates are shown to 3 decimals, counts as integers, nan as "-".
    """
    from rich.table import Table

    threshold = result.get("threshold")
    caption = f"threshold {describe_threshold(threshold)}" if threshold is not None else None
    table = Table(title=title, caption=caption)
    table.add_column("group", style="bold")
    for col in _TABLE_COLUMNS:
        table.add_column(col, justify="right")

    def row(name: str, m: dict) -> list[str]:
        cells = [name]
        for col in _TABLE_COLUMNS:
            v = m.get(col)
            if col in ("support", "positives") and v is not None:
                v = int(v)
            cells.append(_fmt(v))
        return cells

    table.add_row(*row("overall", result["overall"]), end_section=bool(result.get("per_group")))
    for gid, m in result.get("per_group", {}).items():
        table.add_row(*row(str(gid), m))
    return table
