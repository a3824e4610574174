"""Decision thresholds: one for every criterion, or one per criterion (import-light: the CLI's
progress lines describe them without loading scikit-learn)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence, Union

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = ["Threshold", "describe_threshold", "thresholds_of"]

Threshold = Union[float, Mapping[str, float]]


def thresholds_of(threshold: Threshold, groups: Sequence[str]) -> float | np.ndarray:
    """The decision threshold of each example: one for all, or each criterion's own (a criterion
    the mapping does not name uses 0.5)."""
    if isinstance(threshold, Mapping):
        import numpy as np

        return np.asarray([float(threshold.get(str(g), 0.5)) for g in groups], dtype=np.float64)
    return float(threshold)


def describe_threshold(threshold: Threshold) -> str:
    """``0.430``, or ``per criterion (0.31 to 0.62)``."""
    if isinstance(threshold, Mapping):
        values = list(threshold.values())
        return f"per criterion ({min(values):.2f} to {max(values):.2f})" if values else "per criterion"
    return f"{float(threshold):.3f}"
