"""The runtime a backend plugin builds: where and how the engine runs a model.

Backends decide the values (device, precision, compilation, ...); this class applies them with
torch, so every backend gets the same, tested mechanics.
"""

from __future__ import annotations

import contextlib
import enum
from dataclasses import dataclass
from typing import Any, ContextManager


class Precision(enum.StrEnum):
    """The arithmetic a model trains in: full fp32, or bf16 / fp16 autocast (fp16 also scales
    gradients). A backend resolves its configured choice (``auto`` included) to one of these."""

    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"

    @property
    def torch_dtype_name(self) -> str | None:
        """The autocast dtype's name in torch (None: no autocast)."""
        return {Precision.BF16: "bfloat16", Precision.FP16: "float16"}.get(self)

# Allocation failures that are not torch.OutOfMemoryError: CUDA driver, cuBLAS/cuDNN workspaces,
# MPS and the CPU allocator report them as plain RuntimeErrors.
_OOM_MESSAGES = ("out of memory", "CUBLAS_STATUS_ALLOC_FAILED", "CUDNN_STATUS_ALLOC_FAILED",
                 "can't allocate memory")


@dataclass(frozen=True)
class Runtime:
    """``device`` as torch spells it; ``precision`` a :class:`Precision` (a plain ``"bf16"`` is
    accepted and converted); ``compile_mode`` None disables ``torch.compile``;
    ``probe_batch_size`` asks the engine to find the largest micro-batch that fits the device
    (:mod:`criteria.engine.fit.micro_batches`)."""

    device: str = "cpu"
    precision: Precision = Precision.FP32
    compile_mode: str | None = None
    gradient_checkpointing: bool = False
    attention: str | None = None
    probe_batch_size: bool = False
    summary: str = ""  # what was chosen and why, for the run header ("cpu, 2 threads, fp32: ...")

    def describe(self) -> str:
        """One line for the run header: the backend's summary, or the device and precision."""
        return self.summary or f"{self.device}, {self.precision}"

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "precision", Precision(self.precision))
        except ValueError:
            allowed = ", ".join(p.value for p in Precision)
            raise ValueError(f"unknown precision {self.precision!r}; one of {allowed}") from None

    @property
    def device_type(self) -> str:
        return self.device.split(":")[0]

    @property
    def autocast_dtype(self) -> Any:
        import torch

        name = self.precision.torch_dtype_name
        return getattr(torch, name) if name else None

    def autocast(self) -> ContextManager[Any]:
        """Mixed-precision context for forward passes (a no-op in fp32)."""
        import torch

        dtype = self.autocast_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=dtype)

    def grad_scaler(self) -> Any:
        """A ``torch.amp.GradScaler`` for fp16, else None (bf16 and fp32 need none)."""
        import torch

        if self.precision is not Precision.FP16:
            return None
        return torch.amp.GradScaler(self.device_type)

    def is_out_of_memory(self, exc: BaseException) -> bool:
        """Whether ``exc`` says the device ran out of memory (a smaller batch may then fit)."""
        import torch

        # torch.OutOfMemoryError (torch 2.5+, any device) is what torch.cuda.OutOfMemoryError became.
        if isinstance(exc, getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)):
            return True
        return isinstance(exc, RuntimeError) and any(marker in str(exc) for marker in _OOM_MESSAGES)

    def free_memory(self) -> None:
        """Give the memory of dropped tensors back to the device (after an out-of-memory error)."""
        if self.device_type != "cuda":
            return
        import gc

        import torch

        gc.collect()  # tensors held by reference cycles (an exception's frames) are freed only here
        torch.cuda.empty_cache()

    def fork_rng(self) -> ContextManager[Any]:
        """Restores the CPU's and this device's random state on exit: what runs inside (the batch
        size probe) leaves training's random draws (dropout, shuffling) as they would have been."""
        import torch

        devices = [] if self.device_type == "cpu" else [self.device]  # the CPU's state is always kept
        return torch.random.fork_rng(devices=devices, device_type=self.device_type)

    def model_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``from_pretrained`` (the attention implementation)."""
        return {"attn_implementation": self.attention} if self.attention else {}

    def prepare(self, model: Any) -> Any:
        """Move a model to the device and apply checkpointing and compilation."""
        import torch

        model = model.to(self.device)
        if self.gradient_checkpointing:
            # The transformers encoder (inside a classifier, or under a PEFT wrapper) owns the switch.
            encoder = getattr(model, "encoder", model)
            # transformers 5 renamed the switch (and its keyword); older versions have the first name.
            new = getattr(encoder, "activation_checkpointing_enable", None)
            old = getattr(encoder, "gradient_checkpointing_enable", None)
            if new is None and old is None:
                raise ValueError(f"{type(encoder).__name__} does not support gradient checkpointing; "
                                 "set gradient_checkpointing = false in the backend")
            kwargs = {"use_reentrant": False}
            if new is not None:
                new(activation_checkpointing_kwargs=kwargs)
            else:
                old(gradient_checkpointing_kwargs=kwargs)
        if self.compile_mode is not None:
            model = torch.compile(model, mode=self.compile_mode)
        return model
