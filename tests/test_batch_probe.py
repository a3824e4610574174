"""The largest-batch probe, the out-of-memory back-off and gradient accumulation, without a GPU:
a fake ``try_batch``/``run_micro`` raises the errors CUDA raises above a size threshold."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from builtin_plugins import BUILTINS as REGISTRY
from criteria.data.batching import bucketed_batches
from criteria.engine.micro_batches import (
    DoesNotFitError,
    MicroBatcher,
    accumulation_steps,
    find_micro_batch_size,
    probe_sizes,
    worst_case_indices,
)
from criteria.engine.runtime import Runtime
from criteria.errors import CriteriaError

CPU = Runtime()


def cuda_oom(size: int) -> torch.OutOfMemoryError:
    return torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {size} MiB")


class FakeDevice:
    """Runs out of memory above ``limit`` examples; checks memory was freed between tries."""

    def __init__(self, limit: int, error=cuda_oom) -> None:
        self.limit, self.error = limit, error
        self.tried: list[int] = []
        self.frees = 0
        self.dirty = False  # a try left memory (gradients, cached blocks) behind

    def try_batch(self, size: int) -> None:
        assert not self.dirty, "memory was not freed between tries"
        self.tried.append(size)
        self.dirty = True
        if size > self.limit:
            raise self.error(size)

    def free(self) -> None:
        self.frees += 1
        self.dirty = False

    def probe(self, start: int, cap: int, **kwargs) -> int:
        return find_micro_batch_size(self.try_batch, start=start, cap=cap, is_out_of_memory=CPU.is_out_of_memory,
                                     free=self.free, **kwargs)


# --- accumulation arithmetic ------------------------------------------------------------------


@pytest.mark.parametrize(("micro", "effective", "accumulation"),
                         [(16, 64, 4), (16, 24, 2), (48, 48, 1), (32, 16, 1), (1, 7, 7)])
def test_accumulation_is_the_ceiling_of_effective_over_micro(micro, effective, accumulation):
    assert accumulation_steps(micro, effective) == accumulation


def test_accumulation_rejects_sizes_below_one():
    with pytest.raises(ValueError, match="at least 1"):
        accumulation_steps(0, 16)


def test_micro_batcher_reports_its_effective_batch_and_never_exceeds_it():
    batcher = MicroBatcher(16, 24)
    assert (batcher.micro_batch_size, batcher.accumulation, batcher.effective_batch_size) == (16, 2, 24)
    assert batcher.describe() == "micro-batch 16 x 2 accumulation steps = effective batch 24"
    assert MicroBatcher(32, 16).micro_batch_size == 16  # a micro-batch is at most one step


def test_split_covers_the_step_in_order_with_near_equal_micro_batches():
    batcher = MicroBatcher(5, 23)
    parts = batcher.split(np.arange(23))
    assert len(parts) == batcher.accumulation == 5
    assert [len(p) for p in parts] == [5, 5, 5, 4, 4]
    assert np.concatenate(parts).tolist() == list(range(23))
    assert [len(p) for p in batcher.split(np.arange(7))] == [4, 3]  # an epoch's short last step


# --- the probe --------------------------------------------------------------------------------


def test_probe_sizes_double_up_to_the_cap():
    assert probe_sizes(16, 64) == [16, 32, 64]
    assert probe_sizes(16, 48) == [16, 32, 48]
    assert probe_sizes(16, 8) == [8]


def test_worst_case_batch_is_the_longest_examples():
    lengths = [5, 90, 12, 90, 40]
    assert worst_case_indices(lengths, 3).tolist() == [1, 3, 4]
    assert worst_case_indices(lengths[:2], 4).tolist() == [1, 0, 1, 0]  # fewer examples than the size


def test_probe_returns_the_largest_size_that_fits_going_up():
    device = FakeDevice(limit=40)
    assert device.probe(16, 128) == 32
    assert device.tried == [16, 32, 64]  # stops at the first failure
    assert device.frees == 3 and not device.dirty  # after every try, failed or not


def test_probe_goes_down_when_the_configured_size_does_not_fit():
    device = FakeDevice(limit=5)
    assert device.probe(16, 64) == 4
    assert device.tried == [16, 8, 4]
    assert device.frees == 3


def test_probe_tries_the_cap_itself_when_it_is_not_a_doubling():
    device = FakeDevice(limit=1000)
    assert device.probe(16, 48) == 48
    assert device.tried == [16, 32, 48]


def test_probe_recognises_a_plain_runtime_error_out_of_memory():
    device = FakeDevice(limit=20, error=lambda size: RuntimeError("CUDA error: out of memory"))
    assert device.probe(8, 64) == 16


def test_probe_does_not_swallow_other_errors():
    device = FakeDevice(limit=0, error=lambda size: ValueError("shapes do not match"))
    with pytest.raises(ValueError, match="shapes"):
        device.probe(16, 64)
    assert device.tried == [16]


def test_probe_says_clearly_when_even_batch_size_1_does_not_fit():
    device = FakeDevice(limit=0)
    with pytest.raises(DoesNotFitError) as info:
        device.probe(8, 32, max_length=512, device="cuda:0")
    assert device.tried == [8, 4, 2, 1] and not device.dirty
    message = str(info.value)
    assert isinstance(info.value, CriteriaError)
    assert "does not fit in cuda:0 memory at batch size 1 with sequences of 512 tokens" in message
    for fix in ("data.max_length", "bf16 or fp16", "gradient_checkpointing = true", "PEFT"):
        assert fix in message
    assert isinstance(info.value.__cause__, torch.OutOfMemoryError)


def test_micro_batcher_probe_is_capped_by_the_training_set():
    device = FakeDevice(limit=1000)
    batcher = MicroBatcher(8, 64, is_out_of_memory=CPU.is_out_of_memory, free=device.free)
    assert batcher.probe(device.try_batch, examples=20) == 20
    assert device.tried == [8, 16, 20]
    assert (batcher.micro_batch_size, batcher.accumulation, batcher.effective_batch_size) == (20, 4, 64)


# --- the back-off during training -------------------------------------------------------------


def test_back_off_halves_the_micro_batch_and_retries_the_whole_step_once():
    runs: list[list[int]] = []
    frees = []

    def run_micro(micro: np.ndarray, weight: float) -> float:
        runs.append(micro.tolist())
        if len(micro) > 4 and 17 in micro:  # the step's third micro-batch runs out of memory
            raise cuda_oom(len(micro))
        return weight

    batcher = MicroBatcher(8, 24, is_out_of_memory=CPU.is_out_of_memory, free=lambda: frees.append(len(runs)))
    weights = batcher.run_step(np.arange(24), run_micro)
    assert runs[:3] == [list(range(0, 8)), list(range(8, 16)), list(range(16, 24))]
    assert frees == [3]  # once, right after the failure, before the retry
    retried = Counter(i for micro in runs[3:] for i in micro)
    assert retried == Counter(range(24))  # every example of the failed step, exactly once
    assert all(len(micro) == 4 for micro in runs[3:])
    assert (batcher.micro_batch_size, batcher.accumulation, batcher.effective_batch_size) == (4, 6, 24)
    assert batcher.back_offs == 1
    assert weights == pytest.approx([4 / 24] * 6) and sum(weights) == pytest.approx(1.0)


def test_back_off_keeps_the_smaller_size_for_later_steps():
    sizes = []

    def run_micro(micro: np.ndarray, weight: float) -> None:
        sizes.append(len(micro))
        if len(micro) > 8:
            raise cuda_oom(len(micro))

    batcher = MicroBatcher(32, 32, is_out_of_memory=CPU.is_out_of_memory)
    batcher.run_step(np.arange(32), run_micro)
    batcher.run_step(np.arange(32, 64), run_micro)
    assert sizes == [32, 16, 8, 8, 8, 8] + [8, 8, 8, 8]
    assert batcher.back_offs == 2 and batcher.accumulation == 4


def test_back_off_below_size_1_is_the_same_clear_error():
    def run_micro(micro: np.ndarray, weight: float) -> None:
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    batcher = MicroBatcher(2, 8, is_out_of_memory=CPU.is_out_of_memory, max_length=256, device="cuda:0")
    with pytest.raises(DoesNotFitError, match="at batch size 1 with sequences of 256 tokens"):
        batcher.run_step(np.arange(8), run_micro)
    assert batcher.micro_batch_size == 1


def test_run_step_does_not_swallow_other_errors():
    def run_micro(micro: np.ndarray, weight: float) -> None:
        raise RuntimeError("the training loss became nan")

    batcher = MicroBatcher(8, 8, is_out_of_memory=CPU.is_out_of_memory)
    with pytest.raises(RuntimeError, match="nan"):
        batcher.run_step(np.arange(8), run_micro)
    assert batcher.micro_batch_size == 8


# --- gradient accumulation on a real model ----------------------------------------------------


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)).double()


def _data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(n, 8, generator=generator, dtype=torch.float64), torch.randint(0, 2, (n,), generator=generator)


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("step", [24, 23])  # 23: micro-batches of unequal size
def test_accumulated_gradients_equal_the_unsplit_batch_despite_out_of_memory(step):
    x, y = _data(step)
    reference = _model()
    torch.nn.functional.cross_entropy(reference(x), y).backward()

    model = _model()
    limit = 4

    def run_micro(micro: np.ndarray, weight: float) -> float:
        idx = torch.as_tensor(micro)
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        (loss * weight).backward()
        if len(micro) > limit:  # as if backward ran out of memory part-way: gradients are half-added
            raise cuda_oom(len(micro))
        return loss.item() * len(micro)

    batcher = MicroBatcher(16, step, is_out_of_memory=CPU.is_out_of_memory,
                           free=lambda: model.zero_grad(set_to_none=True))
    losses = batcher.run_step(np.arange(step), run_micro)
    assert batcher.micro_batch_size == 4 and batcher.back_offs == 2 and batcher.effective_batch_size == step
    for name, grad in _grads(model).items():
        torch.testing.assert_close(grad, _grads(reference)[name], msg=name)
    assert sum(losses) / step == pytest.approx(torch.nn.functional.cross_entropy(reference(x), y).item())


def test_probing_the_longest_sequences_means_no_step_backs_off():
    """A fake memory budget in padded tokens: micro-batch memory grows with size x longest length."""
    n, budget = 100, 600
    lengths = np.random.default_rng(0).integers(10, 120, size=n)
    lengths[7] = 128
    x, y = _data(n)
    model = _model()
    seen: Counter[int] = Counter()

    def run_micro(micro: np.ndarray, weight: float) -> float:
        if len(micro) * int(lengths[micro].max()) > budget:
            raise cuda_oom(len(micro))
        idx = torch.as_tensor(micro)
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        (loss * weight).backward()
        seen.update(micro.tolist())
        return loss.item()

    def free() -> None:
        model.zero_grad(set_to_none=True)

    batcher = MicroBatcher(2, 32, is_out_of_memory=CPU.is_out_of_memory, free=free, max_length=int(lengths.max()))
    batcher.probe(lambda size: run_micro(worst_case_indices(lengths, size), 1.0), examples=n)
    assert batcher.micro_batch_size == 4  # 4 x 128 fits in 600 tokens, 8 x 128 does not
    assert all(p.grad is None for p in model.parameters())  # the probe leaves no gradients behind
    seen.clear()
    for positions in bucketed_batches(lengths, batcher.effective_batch_size, seed=0):
        batcher.run_step(positions, run_micro)
        free()
    assert batcher.back_offs == 0
    assert seen == Counter(range(n))  # one epoch: every example once


# --- the runtime's side -----------------------------------------------------------------------


@pytest.mark.parametrize("error", [
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB"),
    torch.cuda.OutOfMemoryError("CUDA out of memory."),
    RuntimeError("CUDA error: out of memory"),
    RuntimeError("MPS backend out of memory (MPS allocated: 17.00 GB)"),
    RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"),
])
def test_runtime_recognises_out_of_memory(error):
    assert CPU.is_out_of_memory(error)
    assert Runtime("cuda:0").is_out_of_memory(error)


@pytest.mark.parametrize("error", [
    RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x8 and 16x2)"),
    RuntimeError("the training loss became nan at epoch 1, batch 3"),
    ValueError("out of memory"),  # not an error torch raises for memory
    KeyboardInterrupt(),
])
def test_runtime_does_not_take_other_errors_for_out_of_memory(error):
    assert not CPU.is_out_of_memory(error)


def test_free_memory_empties_the_cuda_cache_only_on_cuda(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append("empty_cache"))
    Runtime("cpu").free_memory()
    Runtime("mps").free_memory()
    assert calls == []
    Runtime("cuda:1").free_memory()
    assert calls == ["empty_cache"]


def test_only_the_cuda_backend_probes(monkeypatch):
    from criteria import hardware

    assert Runtime().probe_batch_size is False
    cpu = REGISTRY.get("backend", "cpu").cls
    threads, matmul = torch.get_num_threads(), torch.get_float32_matmul_precision()
    try:
        assert cpu(cpu.Config()).build().probe_batch_size is False
        cuda = REGISTRY.get("backend", "cuda").cls
        assert cuda.Config().auto_batch_size is True
        # build() needs only the driver's device list: fake one, so this runs without a GPU
        import criteria_builtins.backends as backends

        monkeypatch.setattr(backends, "cuda_devices", lambda: (hardware.CudaDevice(0, "Fake H100", (9, 0)),))
        assert cuda(cuda.Config()).build().probe_batch_size is True
        assert cuda(cuda.Config(auto_batch_size=False)).build().probe_batch_size is False
    finally:
        torch.set_num_threads(threads)
        torch.set_float32_matmul_precision(matmul)
    mps = REGISTRY.get("backend", "mps").cls
    assert "auto_batch_size" not in mps.Config.model_fields and "auto_batch_size" not in cpu.Config.model_fields


def test_fork_rng_leaves_training_randomness_as_it_was():
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    with CPU.fork_rng():
        torch.nn.functional.dropout(torch.ones(64), 0.5)  # what a probe's forward draws
    torch.testing.assert_close(torch.rand(4), expected)
