"""Built-in hardware backends. Availability is answered without importing torch.

A backend picks the device and the options the engine applies through
:class:`criteria.engine.runtime.Runtime`: autocast precision (fp16 also gets a gradient scaler),
the attention implementation transformers loads the encoder with, gradient checkpointing,
``torch.compile`` and (CUDA only) whether to probe the largest micro-batch that fits. Checks that
need the device itself (compute capability, macOS version) run in ``build``, so a study fails
before its first trial with a reason.
"""

from __future__ import annotations

import importlib.util
import platform
import warnings
from typing import Literal

from criteria import (
    Availability,
    BackendPlugin,
    BoolParam,
    ChoiceParam,
    CriteriaError,
    CriteriaWarning,
    PluginConfig,
    Requirements,
    Runtime,
    cpu_bf16_support,
    cuda_devices,
    hookimpl,
    usable_cores,
)
from pydantic import Field, field_validator, model_validator

CompileMode = Literal["default", "reduce-overhead", "max-autotune"]
AMPERE = (8, 0)  # bf16, TF32 and FlashAttention-2 need compute capability 8.0 or newer


def _attention(choice: str) -> str | None:
    """``auto`` lets transformers pick (SDPA where the model has it: DeBERTa-v2 has not)."""
    return None if choice == "auto" else choice


class _ModelOptions(PluginConfig):
    attention: Literal["auto", "sdpa", "eager"] = ChoiceParam(
        "auto", searchable=False,
        description="Attention implementation; auto: SDPA where the model supports it, else eager.",
    )
    gradient_checkpointing: bool = BoolParam(
        False, searchable=False, description="Recompute activations in backward: less memory, ~30% slower."
    )


class _Compiled(_ModelOptions):
    compile: bool = BoolParam(False, searchable=False, description="torch.compile the model.")
    compile_mode: CompileMode = ChoiceParam("default", searchable=False)


# Measured with benchmarks/cpu_precision.py: torch emulates bf16 16x (AVX2 machine, 2 threads) to
# 24x (AVX512 machine capped to AVX2) slower than fp32 where the CPU lacks AVX512-BF16 and AMX.
EMULATED_BF16 = "16x to 24x slower than fp32 (measured with benchmarks/cpu_precision.py)"


class CpuConfig(_Compiled):
    precision: Literal["auto", "fp32", "bf16", "fp16"] = ChoiceParam(
        "auto", search=("fp32", "bf16"),
        description="auto: bf16 where the CPU computes it natively (AVX512-BF16, AMX, Arm BF16), else fp32.",
    )
    threads: int | None = Field(None, ge=1, le=1024, description="torch intra-op threads (default: all cores).")

    @field_validator("precision")
    @classmethod
    def _no_fp16_on_cpu(cls, precision: str) -> str:
        if precision == "fp16":
            raise ValueError(
                "fp16 is not available on CPU: it runs about 20x slower than fp32 there; use bf16 or fp32"
            )
        return precision


class Cpu(BackendPlugin):
    name = "cpu"
    summary = "Train on the CPU, in fp32 or bf16 autocast, optionally compiled or checkpointed."
    Config = CpuConfig

    def build(self) -> Runtime:
        import torch

        c = self.config
        threads = c.threads or usable_cores()
        torch.set_num_threads(threads)
        bf16 = cpu_bf16_support()
        if c.precision == "auto":
            precision, why = ("bf16", bf16.why) if bf16 else ("fp32", bf16.why)
        else:
            precision, why = c.precision, "as the spec asks"
            if precision == "bf16" and not bf16:
                warnings.warn(f"precision = \"bf16\" on a CPU without native bf16 ({bf16.why}): torch emulates "
                              f"it, {EMULATED_BF16}. Use precision = \"auto\" (or \"fp32\") in [backend.cpu].",
                              CriteriaWarning, stacklevel=2)
                why = f"emulated: {bf16.why}"
        return Runtime("cpu", precision, c.compile_mode if c.compile else None,
                       c.gradient_checkpointing, _attention(c.attention),
                       summary=f"cpu, {threads} thread{'s' if threads != 1 else ''}, {precision}: {why}")


class CudaConfig(_Compiled):
    device: int = Field(0, ge=0, le=1023, description="CUDA device index.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = ChoiceParam(
        "auto", description="auto: bf16 on compute capability 8.0+, else fp16 with a gradient scaler; "
                            "bf16 needs 8.0+.",
    )
    tf32: bool = BoolParam(
        True, searchable=False, description="TF32 for fp32 matmuls; applies on Ampere (8.0) or newer."
    )
    attention: Literal["auto", "sdpa", "eager", "flash_attention_2"] = ChoiceParam(
        "auto", searchable=False,
        description="auto: SDPA where the model supports it; flash_attention_2 needs flash-attn and Ampere+.",
    )
    auto_batch_size: bool = BoolParam(
        True, searchable=False,
        description="Probe the largest micro-batch that fits (on the longest sequences, up to "
                    "train.effective_batch_size); gradient accumulation keeps the effective batch.",
    )

    @field_validator("attention")
    @classmethod
    def _flash_attn_installed(cls, attention: str) -> str:
        # find_spec, not import: flash_attn loads CUDA kernels.
        if attention == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
            raise ValueError(
                "flash_attention_2 needs the flash-attn package, which is not installed here "
                "(pip install flash-attn; it needs a CUDA GPU of compute capability 8.0+); or use sdpa"
            )
        return attention

    @model_validator(mode="after")
    def _flash_attn_needs_half_precision(self) -> CudaConfig:
        if self.attention == "flash_attention_2" and self.precision == "fp32":
            raise ValueError("flash_attention_2 runs in bf16 or fp16 only: set precision to bf16 or fp16")
        return self


class Cuda(BackendPlugin):
    name = "cuda"
    summary = "Train on an NVIDIA GPU: bf16/fp16 autocast (fp16 with a grad scaler), TF32, FlashAttention-2."
    Config = CudaConfig
    requires = Requirements.of({"torch": "torch"}, cuda=True)
    priority = 10

    def build(self) -> Runtime:
        import torch

        c = self.config
        devices = cuda_devices()
        if c.device >= len(devices):
            raise CriteriaError(f"there is no cuda:{c.device}; this machine has {len(devices)} CUDA device(s)")
        gpu = devices[c.device]
        ampere = gpu.compute_capability >= AMPERE
        have = ".".join(map(str, gpu.compute_capability))
        if c.precision == "bf16" and not ampere:
            raise CriteriaError(f"bf16 needs compute capability 8.0+; {gpu.name} has {have}: use fp16 or auto")
        if c.precision == "auto":
            precision = "bf16" if ampere else "fp16"
            why = f"compute capability {have} {'computes' if ampere else 'lacks'} bf16"
        else:
            precision, why = c.precision, "as the spec asks"
        if c.attention == "flash_attention_2" and not ampere:
            raise CriteriaError(
                f"flash_attention_2 needs compute capability 8.0+; {gpu.name} has {have}: use sdpa"
            )
        # "high" lets fp32 matmuls use TF32 where the GPU has it; "highest" keeps full fp32.
        torch.set_float32_matmul_precision("high" if c.tf32 and ampere else "highest")
        return Runtime(f"cuda:{c.device}", precision, c.compile_mode if c.compile else None,
                       c.gradient_checkpointing, _attention(c.attention), probe_batch_size=c.auto_batch_size,
                       summary=f"cuda:{c.device} {gpu.name}, {precision}: {why}")


class MpsConfig(_ModelOptions):
    # MPS autocast supports bf16 (macOS 14+) and fp16; torch.compile on MPS is a prototype, so
    # this backend does not offer it.
    precision: Literal["auto", "fp32", "bf16", "fp16"] = ChoiceParam(
        "auto", description="auto: bf16 on macOS 14+, else fp16 with a gradient scaler; bf16 needs macOS 14+.",
    )


MPS_MIN_MACOS = (12, 3)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit())


class Mps(BackendPlugin):
    name = "mps"
    summary = "Train on an Apple-silicon GPU (Metal Performance Shaders): fp32, or bf16/fp16 autocast."
    Config = MpsConfig
    requires = Requirements.of({"torch": "torch"})

    @classmethod
    def available(cls) -> Availability:
        system, machine = platform.system(), platform.machine()
        if system != "Darwin":
            return Availability(False, f"needs an Apple-silicon Mac (MPS); this machine runs {system}")
        if machine != "arm64":
            return Availability(False, f"needs an Apple-silicon Mac; this Python runs as {machine} "
                                       "(under Rosetta on Apple silicon: install an arm64 Python)")
        macos = platform.mac_ver()[0]
        if _version(macos) < MPS_MIN_MACOS:
            return Availability(False, f"MPS needs macOS 12.3 or newer; this is macOS {macos}")
        return super().available()

    def build(self) -> Runtime:
        import torch

        c = self.config
        if not torch.backends.mps.is_available():
            why = "no MPS device found" if torch.backends.mps.is_built() else "this torch build has no MPS support"
            raise CriteriaError(f"the mps backend cannot run: {why}")
        sonoma = torch.backends.mps.is_macos_or_newer(14, 0)
        macos = platform.mac_ver()[0]
        if c.precision == "bf16" and not sonoma:
            raise CriteriaError(f"bf16 on MPS needs macOS 14+; this is macOS {macos}: use fp16, fp32 or auto")
        if c.precision == "auto":
            precision, why = ("bf16", f"macOS {macos} has bf16 on MPS") if sonoma else \
                ("fp16", f"macOS {macos} has no bf16 on MPS")
        else:
            precision, why = c.precision, "as the spec asks"
        return Runtime("mps", precision, None, c.gradient_checkpointing, _attention(c.attention),
                       summary=f"mps, {precision}: {why}")


@hookimpl
def register_backends(register):
    register(Cpu, Cuda, Mps)
