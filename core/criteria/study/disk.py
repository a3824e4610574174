"""How much disk a study takes: its output folder by part, and the shared cache.

A file hard-linked in several places (the exported best model links the kept one) is counted
once, where it is first met in the order of :data:`PARTS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from criteria.cache import cache_root
from criteria.study.folders import KEPT_FOLDER
from criteria.study.reports import REPORTS_FOLDER

__all__ = ["DiskUsage", "PARTS", "disk_usage", "human_bytes"]

#: The parts of a study's output folder, as ``criteria study status`` names them.
PARTS = (
    (KEPT_FOLDER, "kept models"),
    ("best-model", "best model"),
    ("ensemble", "ensemble"),
    (REPORTS_FOLDER, "trial reports"),
    ("plots", "plots"),
)


@dataclass(frozen=True)
class DiskUsage:
    output: Path
    parts: dict[str, int]  # part name -> bytes (in PARTS order, then "other")
    kept_models: int  # how many trials' models are kept
    reports: int  # how many trial reports there are
    cache: dict[str, int]  # cache folder part (tokens, frozen) -> bytes; shared by every study here

    @property
    def total(self) -> int:
        return sum(self.parts.values())


def _files(folder: Path) -> list[Path]:
    if not folder.exists():
        return []
    return [p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()]


def _sum(files: list[Path], seen: set[tuple[int, int]]) -> int:
    total = 0
    for path in files:
        stat = path.stat()
        if (stat.st_dev, stat.st_ino) not in seen:
            seen.add((stat.st_dev, stat.st_ino))
            total += stat.st_size
    return total


def disk_usage(output: Path) -> DiskUsage:
    """The disk a study's output folder takes, by part, and the cache folder's."""
    seen: set[tuple[int, int]] = set()
    parts = {label: _sum(_files(output / name), seen) for name, label in PARTS}
    parts["other"] = _sum(_files(output), seen)  # whatever is left (each file counted once)
    kept = output / KEPT_FOLDER
    kept_models = sum(1 for p in kept.iterdir() if p.is_dir() and p.name.startswith("trial-")) if kept.is_dir() else 0
    reports = len(list((output / REPORTS_FOLDER).glob("trial-*.json"))) if (output / REPORTS_FOLDER).is_dir() else 0
    root = cache_root()
    cache = {name: _sum(_files(root / name), set()) for name in ("tokens", "frozen")}
    return DiskUsage(output, parts, kept_models, reports, cache)


def human_bytes(count: int) -> str:
    """``1.5 MB`` (powers of 1000, as file managers show them)."""
    value = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"
