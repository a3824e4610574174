"""The names of the metrics the engine computes, defined once (import-light: no scikit-learn).

``METRIC_NAMES`` are computed from labels and probabilities; ``RANKING_METRICS`` among them do not
depend on the decision threshold; ``OBJECTIVE_METRICS`` are what a study may optimise: every metric
and the validation loss.
"""

from __future__ import annotations

__all__ = ["METRIC_NAMES", "OBJECTIVE_METRICS", "RANKING_METRICS", "threshold_metric"]

METRIC_NAMES = ("f1", "macro_f1", "precision", "recall", "roc_auc", "pr_auc", "mcc", "balanced_accuracy", "accuracy")
RANKING_METRICS = ("roc_auc", "pr_auc")
OBJECTIVE_METRICS = (
    "macro_f1", "f1", "precision", "recall", "roc_auc", "pr_auc", "mcc", "balanced_accuracy", "accuracy", "loss",
)


def threshold_metric(metric: str) -> str:
    """The metric a decision threshold is tuned for: the objective, unless it ignores the
    threshold (the loss, a ranking metric); then macro-F1."""
    return metric if metric in METRIC_NAMES and metric not in RANKING_METRICS else "macro_f1"
