"""Built-in hardware backends. Availability is answered without importing torch."""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import Field, field_validator

from criteria import BackendPlugin, BoolParam, ChoiceParam, PluginConfig, Requirements, hookimpl
from criteria.runtime import Runtime

CompileMode = Literal["default", "reduce-overhead", "max-autotune"]


class CpuConfig(PluginConfig):
    precision: Literal["fp32", "bf16", "fp16"] = ChoiceParam("fp32", search=("fp32", "bf16"))
    compile: bool = BoolParam(False, searchable=False, description="torch.compile the model.")
    compile_mode: CompileMode = ChoiceParam("default", searchable=False)
    threads: int | None = Field(None, ge=1, le=1024, description="torch intra-op threads (default: all cores).")

    @field_validator("precision")
    @classmethod
    def _no_fp16_on_cpu(cls, precision: str) -> str:
        if precision == "fp16":
            raise ValueError("fp16 is not available on CPU: it runs about 20x slower than fp32 there; use bf16 or fp32")
        return precision


def _usable_cores() -> int:
    """Cores this process may use (respects CPU affinity, unlike os.cpu_count())."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class Cpu(BackendPlugin):
    name = "cpu"
    summary = "Train on the CPU, in fp32 or bf16 autocast, optionally compiled."
    Config = CpuConfig

    def build(self) -> Runtime:
        import torch

        c = self.config
        torch.set_num_threads(c.threads or _usable_cores())
        return Runtime("cpu", c.precision, c.compile_mode if c.compile else None)


class CudaConfig(PluginConfig):
    device: int = Field(0, ge=0, description="CUDA device index.")
    precision: Literal["fp32", "bf16", "fp16"] = ChoiceParam("bf16", description="bf16 needs compute capability 8.0+.")
    tf32: bool = BoolParam(True, searchable=False, description="TF32 matmuls on Ampere or newer.")
    attention: Literal["sdpa", "eager"] = ChoiceParam("sdpa", searchable=False)
    gradient_checkpointing: bool = BoolParam(False, searchable=False, description="Trade compute for memory.")
    compile: bool = BoolParam(False, searchable=False)
    compile_mode: CompileMode = ChoiceParam("default", searchable=False)


class Cuda(BackendPlugin):
    name = "cuda"
    summary = "Train on an NVIDIA GPU: bf16/fp16 autocast (fp16 with a grad scaler), TF32, SDPA, compile."
    Config = CudaConfig
    requires = Requirements.of({"torch": "torch"}, cuda=True)
    priority = 10

    def build(self) -> Runtime:
        import torch

        c = self.config
        if c.precision == "bf16" and not torch.cuda.is_bf16_supported():
            raise RuntimeError(f"bf16 needs compute capability 8.0+; {torch.cuda.get_device_name(c.device)} lacks it: use fp16")
        torch.backends.cuda.matmul.allow_tf32 = c.tf32
        torch.backends.cudnn.allow_tf32 = c.tf32
        return Runtime(f"cuda:{c.device}", c.precision, c.compile_mode if c.compile else None,
                       c.gradient_checkpointing, c.attention)


@hookimpl
def register_backends(register):
    register(Cpu, Cuda)
