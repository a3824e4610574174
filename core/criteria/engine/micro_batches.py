"""Micro-batches that fit the device: a largest-batch probe, an out-of-memory back-off, and the
gradient-accumulation arithmetic that keeps the effective batch whatever the micro-batch.

An optimizer step trains on ``effective_batch_size`` examples. They run as micro-batches of at most
``micro_batch_size`` examples, and each micro-batch's loss is weighted by its share of the step, so
the accumulated gradient is the step's mean gradient however the step is split. The micro-batch
size is therefore a memory knob only: probing for it, or halving it after an out-of-memory error,
never changes what the model learns.

This module knows no torch: the caller passes what runs a batch, what recognises an out-of-memory
error and what frees memory (:class:`criteria.engine.runtime.Runtime` has the last two), so every path is
tested without a GPU.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence, TypeVar

import numpy as np

from criteria.errors import CriteriaError

T = TypeVar("T")


class DoesNotFitError(CriteriaError):
    """Training runs out of device memory even one example at a time."""

    def __init__(self, device: str, max_length: int | None) -> None:
        tokens = f" with sequences of {max_length} tokens" if max_length else ""
        super().__init__(
            f"the model does not fit in {device} memory at batch size 1{tokens}. To make it fit: "
            "lower data.max_length; train in bf16 or fp16 (the backend's precision); set "
            "gradient_checkpointing = true in the backend's section; or train fewer weights with a "
            "PEFT method ([peft] use = \"lora\")."
        )
        self.device, self.max_length = device, max_length


def accumulation_steps(micro_batch_size: int, effective_batch_size: int) -> int:
    """Micro-batches per optimizer step: ``ceil(effective / micro)``."""
    if micro_batch_size < 1 or effective_batch_size < 1:
        raise ValueError(f"batch sizes must be at least 1, got micro {micro_batch_size}, "
                         f"effective {effective_batch_size}")
    return math.ceil(effective_batch_size / micro_batch_size)


def probe_sizes(start: int, cap: int) -> list[int]:
    """The sizes the probe tries upward: ``start``, doubled while below ``cap``, then ``cap``."""
    sizes = [max(1, min(start, cap))]
    while sizes[-1] < cap:
        sizes.append(min(sizes[-1] * 2, cap))
    return sizes


def worst_case_indices(lengths: Sequence[int], size: int) -> np.ndarray:
    """Positions of the ``size`` longest examples (repeated when there are fewer): the batch of
    that size that needs the most memory."""
    if len(lengths) == 0:
        raise ValueError("no examples to probe with")
    longest_first = np.argsort(-np.asarray(lengths), kind="stable")
    return np.resize(longest_first[:size], size)


def _attempt(run: Callable[[], T], is_out_of_memory: Callable[[BaseException], bool],
             free: Callable[[], None]) -> tuple[T | None, BaseException | None]:
    """``run()``'s result, or the out-of-memory error it raised; memory is freed after a failure."""
    failure = None
    try:
        return run(), None
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        # The traceback's frames hold the failed batch's tensors: drop them, and free memory only
        # after leaving the except block, where nothing refers to them any more.
        failure = exc.with_traceback(None)
    free()
    return None, failure


def find_micro_batch_size(try_batch: Callable[[int], object], *, start: int, cap: int,
                          is_out_of_memory: Callable[[BaseException], bool], free: Callable[[], None],
                          max_length: int | None = None, device: str = "device") -> int:
    """The largest micro-batch that trains without running out of memory.

    ``try_batch(size)`` runs one forward and backward at ``size`` on the longest training examples
    (see :func:`worst_case_indices`). Tried upward from ``start`` by doubling, up to ``cap`` (the
    effective batch: a larger micro-batch would only be split again), stopping at the first that
    fails; when ``start`` itself fails, downward by halving to 1. ``free()`` runs after every try
    (it should drop gradients and release cached memory). Raises :class:`DoesNotFitError` when
    even size 1 runs out of memory; any other error propagates at once.
    """
    sizes = probe_sizes(start, cap)

    def fits(size: int) -> BaseException | None:
        _, failure = _attempt(lambda: try_batch(size), is_out_of_memory, free)
        if failure is None:
            free()
        return failure

    failure = fits(sizes[0])
    if failure is None:
        best = sizes[0]
        for size in sizes[1:]:
            if fits(size) is not None:
                break
            best = size
        return best
    size = sizes[0]
    while size > 1:
        size //= 2
        failure = fits(size)
        if failure is None:
            return size
    raise DoesNotFitError(device, max_length) from failure


class MicroBatcher:
    """Runs optimizer steps as micro-batches, halving the micro-batch when the device runs out of
    memory (and so doubling the accumulation: the effective batch stays the same).

    The engine builds one per training run, optionally :meth:`probe`\\ s it, then per optimizer
    step calls :meth:`run_step` with the step's example indices and steps the optimizer.
    ``free`` should drop the gradients accumulated so far (``model.zero_grad(set_to_none=True)``)
    and release cached memory (:meth:`criteria.runtime.Runtime.free_memory`): a step that ran out
    of memory is run again from its first example.
    """

    def __init__(self, micro_batch_size: int, effective_batch_size: int, *,
                 is_out_of_memory: Callable[[BaseException], bool] = lambda exc: False,
                 free: Callable[[], None] = lambda: None, max_length: int | None = None,
                 device: str = "device") -> None:
        accumulation_steps(micro_batch_size, effective_batch_size)  # validates both
        self.effective_batch_size = effective_batch_size
        self.micro_batch_size = min(micro_batch_size, effective_batch_size)
        self.is_out_of_memory, self.free = is_out_of_memory, free
        self.max_length, self.device = max_length, device
        self.back_offs = 0

    @property
    def accumulation(self) -> int:
        """Micro-batches in a full optimizer step."""
        return accumulation_steps(self.micro_batch_size, self.effective_batch_size)

    def describe(self) -> str:
        return (f"micro-batch {self.micro_batch_size} x {self.accumulation} accumulation steps "
                f"= effective batch {self.effective_batch_size}")

    def probe(self, try_batch: Callable[[int], object], examples: int | None = None) -> int:
        """Set the micro-batch to the largest that fits (see :func:`find_micro_batch_size`), at most
        the effective batch and ``examples`` (the training set's size); returns it."""
        cap = min(self.effective_batch_size, examples or self.effective_batch_size)
        self.micro_batch_size = find_micro_batch_size(
            try_batch, start=self.micro_batch_size, cap=max(1, cap), is_out_of_memory=self.is_out_of_memory,
            free=self.free, max_length=self.max_length, device=self.device,
        )
        return self.micro_batch_size

    def split(self, indices: np.ndarray) -> list[np.ndarray]:
        """Contiguous micro-batches of near-equal size (none above ``micro_batch_size``): a
        length-bucketed step stays bucketed."""
        parts = accumulation_steps(self.micro_batch_size, max(1, len(indices)))
        return np.array_split(np.asarray(indices), parts)

    def back_off(self, failure: BaseException | None = None) -> None:
        """Halve the micro-batch; :class:`DoesNotFitError` when it is already 1."""
        if self.micro_batch_size <= 1:
            raise DoesNotFitError(self.device, self.max_length) from failure
        self.micro_batch_size //= 2
        self.back_offs += 1

    def run_step(self, indices: np.ndarray, run_micro: Callable[[np.ndarray, float], T]) -> list[T]:
        """Run one optimizer step's examples; returns ``run_micro``'s results, one per micro-batch.

        ``run_micro(micro_indices, weight)`` runs the forward and the backward of ``loss * weight``,
        ``weight`` being the micro-batch's share of the step's examples. When it runs out of
        memory, the step's partial gradients are dropped (``free``), the micro-batch is halved and
        the whole step runs again: every example counts exactly once in the step's gradient.
        """
        indices = np.asarray(indices)
        while True:
            results, failure = _attempt(
                lambda: [run_micro(micro, len(micro) / len(indices)) for micro in self.split(indices)],
                self.is_out_of_memory, self.free,
            )
            if failure is None:
                return results  # type: ignore[return-value]
            self.back_off(failure)
