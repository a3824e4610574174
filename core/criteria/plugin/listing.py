"""What ``criteria plugins list`` shows, cached so that listing need not import every plugin.

Building the registry imports every plugin module and pydantic, which is most of a listing's
time. What the listing shows depends only on things this module can check without importing
them, so it is kept under the user cache directory (:func:`criteria.cache.cache_root`) and reused while none of them changed:

- the Python executable and version, and every ``sys.path`` entry: its modification time and the
  names of the distributions (``*.dist-info``, ``*.egg-info``) and ``.pth`` files in it. Installing,
  removing or upgrading any package (a plugin distribution, or a package a plugin ``requires``)
  changes them;
- every ``CRITERIA_*`` environment variable (``CRITERIA_LOAD_PLUGINS`` among them), and those the
  CUDA check reads (``CUDA_VISIBLE_DEVICES``, ``LD_LIBRARY_PATH``);
- the machine: OS, kernel release and architecture (Apple silicon and macOS version for MPS), the
  NVIDIA device nodes, GPUs and driver version, the dynamic linker's cache;
- the files of every module loaded from ``criteria`` and from the plugin distributions' packages,
  and each plugin distribution's ``entry_points.txt`` (modification time and size).

So availability is the answer of this machine as long as a plugin's ``available()`` depends on
nothing else. A plugin whose check reads anything else sets ``cache_availability = False``; a
listing that holds one is never cached, nor is one with broken plugins (their report is rebuilt
every time). ``criteria plugins list --refresh`` rebuilds the cache; ``CRITERIA_LISTING_CACHE=0``
turns it off. A cache file that cannot be read or parsed is ignored and rewritten.

This module imports nothing beyond the standard library until the cache misses.
"""

from __future__ import annotations

import json
import os
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from criteria.cache import cache_root

if TYPE_CHECKING:  # pragma: no cover
    from criteria.plugin.registry import PluginInfo, Registry

DISABLE_ENV = "CRITERIA_LISTING_CACHE"
FORMAT = 1
# Read by the CUDA availability check (hardware.cuda_devices loads libcuda through ctypes).
MACHINE_ENV = ("CUDA_VISIBLE_DEVICES", "LD_LIBRARY_PATH")
_DIST_SUFFIXES = (".dist-info", ".egg-info", ".egg-link", ".egg", ".pth")
_TEXT_FIELDS = frozenset({"kind", "name", "summary", "distribution", "version", "available", "reason"})


@dataclass
class Listing:
    """Every plugin as ``criteria plugins list --json`` prints it, and the kinds in display order."""

    kinds: list[tuple[str, str]]  # (name, title)
    plugins: list[dict[str, Any]]
    broken: list[dict[str, Any]] = field(default_factory=list)
    cached: bool = False  # read from the cache rather than built

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [record for record in self.plugins if record["kind"] == kind]


def load_listing(refresh: bool = False) -> Listing:
    """The listing, from the cache when nothing it depends on changed, else built and cached."""
    if os.environ.get(DISABLE_ENV, "").strip().lower() in ("0", "false", "no", "off"):
        return build_listing()[0]
    key = fingerprint()
    path = cache_path(key)
    if not refresh:
        cached = _read(path, key)
        if cached is not None:
            return cached
    listing, watch, cacheable = build_listing()
    if cacheable:
        _write(path, {"format": FORMAT, "key": key, "watch": watch, "kinds": listing.kinds,
                      "plugins": listing.plugins})
    return listing


def build_listing() -> tuple[Listing, list[list[Any]], bool]:
    """The listing from the live registry, the files it depends on, and whether it may be cached."""
    from criteria.errors import render_value
    from criteria.plugin.kinds import KINDS
    from criteria.plugin.registry import Registry

    registry = Registry.from_entry_points()
    records = [plugin_record(info) for kind in KINDS for info in registry.plugins(kind).values()]
    # Through JSON once, so a listing read back from the cache is the very same data.
    plain = json.loads(json.dumps({"plugins": records, "broken": [vars(b) for b in registry.broken]},
                                  default=render_value))
    listing = Listing([(kind.name, kind.title) for kind in KINDS], plain["plugins"], plain["broken"])
    cacheable = not registry.broken and all(info.cls.cache_availability for info in registry)
    return listing, _watched(registry), cacheable


def plugin_record(info: PluginInfo) -> dict[str, Any]:
    """One plugin as ``criteria plugins list --json`` prints it."""
    from criteria.plugin.fields import params_of

    availability = info.availability()
    return {
        "kind": info.kind.name,
        "name": info.name,
        "summary": info.cls.summary,
        "distribution": info.distribution,
        "version": info.version,
        "requires": info.cls.requires.describe(),
        "available": availability.ok,
        "reason": availability.reason,
        "params": {
            name: {
                "default": param.default,
                "bounds": param.bounds,
                "search": param.declared.as_dict() if param.declared else None,
            }
            for name, param in params_of(info.cls.Config).items()
        },
    }


# --- the key -------------------------------------------------------------------------------------


def fingerprint() -> dict[str, Any]:
    """Everything a listing depends on that can be read without importing a plugin."""
    return {
        "python": [sys.executable, sys.version],
        "path": [_path_entry(entry) for entry in sys.path],
        "env": {name: value for name, value in sorted(os.environ.items()) if name.startswith("CRITERIA_")},
        "machine": _machine(),
    }


def cache_dir() -> Path:
    return cache_root() / "listing"


def cache_path(key: dict[str, Any]) -> Path:
    # One file per interpreter, path and settings, so environments that share a cache directory
    # do not keep overwriting each other; the whole key is still compared on reading.
    where = json.dumps([key["python"], [entry[0] for entry in key["path"]], key["env"]])
    return cache_dir() / f"plugins-{zlib.crc32(where.encode()):08x}.json"


def _path_entry(entry: str) -> list[Any]:
    path = os.path.abspath(entry or os.curdir)
    stamp = _stamp(path)
    try:
        names = sorted(name for name in os.listdir(path) if name.endswith(_DIST_SUFFIXES))
    except OSError:  # missing, or a file (a zip of modules): its stamp is enough
        names = []
    return [path, stamp, names]


def _machine() -> dict[str, Any]:
    uname = os.uname() if hasattr(os, "uname") else None
    facts: dict[str, Any] = {
        "platform": sys.platform,
        "uname": [uname.sysname, uname.release, uname.machine] if uname else None,
        "arch": os.environ.get("PROCESSOR_ARCHITECTURE"),
        "env": {name: os.environ.get(name) for name in MACHINE_ENV},
        "devices": sorted(name for name in _listdir("/dev") if name.startswith(("nvidia", "dxg"))),
        "gpus": sorted(_listdir("/proc/driver/nvidia/gpus")),
        "driver": _read_text("/proc/driver/nvidia/version"),
        "libraries": _stamp("/etc/ld.so.cache"),
    }
    if sys.platform == "win32":
        system = os.environ.get("SystemRoot", r"C:\Windows")
        facts["nvcuda"] = _stamp(os.path.join(system, "System32", "nvcuda.dll"))
    return facts


def _watched(registry: Registry) -> list[list[Any]]:
    packages = {"criteria"} | {ep.module.partition(".")[0] for ep in registry.entry_points}
    files = {
        getattr(module, "__file__", None)
        for name, module in list(sys.modules.items())
        if name.partition(".")[0] in packages
    }
    for ep in registry.entry_points:
        folder = getattr(ep.dist, "_path", None)  # a PathDistribution's .dist-info folder
        if folder is not None:
            files.add(os.path.join(str(folder), "entry_points.txt"))
    return [[file, _stamp(file)] for file in sorted(f for f in files if f)]


def _stamp(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_mtime_ns, st.st_size]


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read(4096)
    except OSError:
        return None


# --- the file ------------------------------------------------------------------------------------


def _read(path: Path, key: dict[str, Any]) -> Listing | None:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        if data["format"] != FORMAT or data["key"] != key:
            return None
        if any(_stamp(file) != stamp for file, stamp in data["watch"]):
            return None
        kinds = [(name, title) for name, title in data["kinds"]]
        plugins = data["plugins"]
        if not all(isinstance(record, dict) and _TEXT_FIELDS <= record.keys() for record in plugins):
            return None
        return Listing(kinds, plugins, [], cached=True)
    except Exception:  # unreadable, truncated or foreign: rebuild it
        return None


def _write(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(tmp, path)  # readers see the old file or the new one, never half of one
    except OSError:  # a read-only cache only costs speed
        try:
            tmp.unlink()
        except OSError:
            pass
