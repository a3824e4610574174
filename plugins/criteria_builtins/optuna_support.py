"""What the sampler and pruner plugins share: optuna is imported only when one is built."""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Iterator

__all__ = ["experimental_ok"]


@contextmanager
def experimental_ok() -> Iterator[None]:
    """Silence Optuna's ExperimentalWarning for options that have been stable for releases."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield
