"""What this machine can compute, answered without importing torch where that is possible.

``criteria plugins list`` must say whether the CUDA backend is available and stay fast, so this
asks the CUDA driver directly (``libcuda`` through ctypes) and reads the installed torch build's
``version.py`` as text instead of importing torch (which costs seconds). Whether the CPU computes
bf16 natively decides the CPU backend's default precision: machines of one kind differ (one has
AVX512-BF16, the next AVX2 only, where torch emulates bf16 about 16x slower than fp32), so it is
asked of the machine at run time, never assumed.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path


def usable_cores() -> int:
    """Cores this process may use (CPU affinity, cgroup pinning), unlike ``os.cpu_count()``."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cpu_flags(wanted: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """The CPU's feature flags from ``/proc/cpuinfo`` (x86 ``flags``, Arm ``Features``), sorted;
    only ``wanted`` ones if given. Empty where the file does not exist (macOS, Windows)."""
    flags = _cpuinfo_flags()
    return tuple(sorted(flags if wanted is None else flags & set(wanted)))


@lru_cache(maxsize=1)
def _cpuinfo_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


# Environment variables that cap the instruction sets torch's kernels use (oneDNN and ATen): with
# them, bf16 is emulated even on a CPU that has it.
_ISA_CAPS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")


@dataclass(frozen=True)
class Bf16Support:
    """Whether the CPU computes bf16 natively, and in words why (for the run header)."""

    native: bool
    why: str

    def __bool__(self) -> bool:
        return self.native


def cpu_bf16_support() -> Bf16Support:
    """Whether bf16 autocast runs natively on this CPU: AVX512-BF16 or AMX on x86 (as torch's
    own checks report them), the BF16 extension on Arm; not where an instruction-set cap in the
    environment (``ONEDNN_MAX_CPU_ISA``, ``ATEN_CPU_CAPABILITY``) keeps torch from using them.
    Imports torch (call it when building a runtime, not when listing plugins)."""
    import torch

    for name in _ISA_CAPS:
        cap = os.environ.get(name, "").upper()
        allowed = ("ALL", "DEFAULT", "AVX512") if name == "ATEN_CPU_CAPABILITY" else ("ALL", "BF16", "AMX")
        if cap and not any(part in cap for part in allowed):
            return Bf16Support(False, f"{name}={os.environ[name]} keeps torch from native bf16")
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64", "x86", "i686"):
        checks = getattr(torch, "cpu", None)
        if checks is not None and getattr(checks, "_is_amx_tile_supported", lambda: False)():
            return Bf16Support(True, "native on this CPU (AMX)")
        if checks is not None and getattr(checks, "_is_avx512_bf16_supported", lambda: False)():
            return Bf16Support(True, "native on this CPU (AVX512-BF16)")
        best = "AVX2" if "avx2" in _cpuinfo_flags() or not _cpuinfo_flags() else "no AVX2"
        return Bf16Support(False, f"this CPU has no native bf16 (no AVX512-BF16 or AMX; {best})")
    if machine in ("arm64", "aarch64"):
        if "bf16" in _cpuinfo_flags():
            return Bf16Support(True, "native on this CPU (Arm BF16)")
        return Bf16Support(False, "this CPU has no native bf16 (no Arm BF16 extension)")
    return Bf16Support(False, f"native bf16 is not known for {platform.machine() or 'this CPU'}")


@dataclass(frozen=True)
class CudaDevice:
    index: int
    name: str
    compute_capability: tuple[int, int]


@lru_cache(maxsize=1)
def torch_build() -> dict[str, str | None]:
    """``{"version": ..., "cuda": ...}`` of the installed torch, read from ``torch/version.py``."""
    import ast

    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return {"version": None, "cuda": None}
    path = Path(next(iter(spec.submodule_search_locations))) / "version.py"
    found: dict[str, str | None] = {"version": None, "cuda": None}
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return found
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
        value = getattr(node, "value", None)
        if isinstance(target, ast.Name) and target.id in found and isinstance(value, ast.Constant):
            found[target.id] = value.value
    return found


@lru_cache(maxsize=1)
def cuda_devices() -> tuple[CudaDevice, ...]:
    """CUDA devices the driver reports; empty when there is no driver or no device."""
    import ctypes

    names = {"win32": ["nvcuda.dll"], "darwin": []}.get(sys.platform, ["libcuda.so.1", "libcuda.so"])
    for lib_name in names:
        try:
            lib = ctypes.CDLL(lib_name)
            break
        except OSError:
            continue
    else:
        return ()
    count = ctypes.c_int()
    if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return ()
    devices = []
    for index in range(count.value):
        handle = ctypes.c_int()
        if lib.cuDeviceGet(ctypes.byref(handle), index) != 0:
            continue
        name = ctypes.create_string_buffer(256)
        lib.cuDeviceGetName(name, 256, handle)
        major, minor = ctypes.c_int(), ctypes.c_int()
        # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75, _MINOR = 76
        lib.cuDeviceGetAttribute(ctypes.byref(major), 75, handle)
        lib.cuDeviceGetAttribute(ctypes.byref(minor), 76, handle)
        devices.append(CudaDevice(index, name.value.decode(errors="replace"), (major.value, minor.value)))
    return tuple(devices)


def describe() -> str:
    """One line about this machine's accelerators, for tags and ``plugins list``."""
    devices = cuda_devices()
    if devices:
        return ", ".join(f"cuda:{d.index} {d.name} (sm_{d.compute_capability[0]}{d.compute_capability[1]})" for d in devices)
    flags = cpu_flags(("avx2", "avx512f", "avx512_bf16", "amx_bf16"))
    return f"cpu ({platform.machine()}{': ' + ' '.join(flags) if flags else ''})"
