"""What accelerators this machine has, answered without importing torch.

``criteria plugins list`` must say whether the CUDA backend is available and stay fast, so this
asks the CUDA driver directly (``libcuda`` through ctypes) and reads the installed torch build's
``version.py`` as text instead of importing torch (which costs seconds).
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
    return f"cpu ({platform.machine()})"
