"""Bit-stable training (``[train] deterministic``): the same configuration, data and seed give the
same weights and metrics on every run on the same machine.

Training seeds what it draws (weights, dropout, batches) already; what else varies from run to
run is arithmetic: kernels that pick algorithms by timing or add in a varying order, and
reductions split over however many threads the machine has. This mode asks torch for
deterministic algorithms (an error, not a silent difference, where a kernel has none), sets every
seed, and runs on one CPU thread, so the result does not depend on the core count either. It is
slower: one thread instead of all of them (measured in docs/study.md).
"""

from __future__ import annotations

import os
import random
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch

__all__ = ["deterministic_mode", "seed_everything"]

#: cuBLAS reuses workspaces across streams unless told a fixed size: needed for determinism on CUDA.
_CUBLAS_WORKSPACE = ":4096:8"


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators (every device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextmanager
def deterministic_mode(seed: int, *, enabled: bool = True) -> Iterator[None]:
    """Deterministic algorithms, every seed set and one CPU thread inside the block (when
    ``enabled``); the previous settings are restored after it."""
    if not enabled:
        yield
        return
    previous = (torch.are_deterministic_algorithms_enabled(), torch.get_num_threads(),
                torch.backends.cudnn.benchmark, os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", _CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.set_num_threads(1)
    seed_everything(seed)
    try:
        yield
    finally:
        algorithms, threads, benchmark, workspace = previous
        torch.use_deterministic_algorithms(algorithms)
        torch.set_num_threads(threads)
        torch.backends.cudnn.benchmark = benchmark
        if workspace is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
