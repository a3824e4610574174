"""Writing files the user keeps: strict JSON, and whole files or nothing.

Every JSON criteria writes is strict (NaN and infinities become ``null``, which other tools can
read; numpy numbers become plain numbers). A file is written beside its destination and renamed
into place, so a crash or a full disk never leaves half a file where a good one was expected,
and a write that fails says why and what to do, naming the path.
"""

from __future__ import annotations

import errno
import json
import math
import os
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

from criteria.errors import CriteriaError

__all__ = ["OutputError", "atomic_output", "check_output_file", "check_output_folder", "strict_json", "write_json"]


class OutputError(CriteriaError):
    """An output path cannot be written; the message names it, says why and how to fix it."""


_REASONS = {
    errno.ENOSPC: "no space is left on the device; free some space or write elsewhere",
    errno.EDQUOT: "the disk quota is exhausted; free some space or write elsewhere",
    errno.EACCES: "it is not writable by this user; choose another place or fix its permissions",
    errno.EPERM: "it is not writable by this user; choose another place or fix its permissions",
    errno.EROFS: "it is on a read-only file system; choose another place",
    errno.ENOTDIR: "a part of the path is a file, not a folder; fix the path",
    errno.EISDIR: "it is a folder; give a file name",
}


def _reason(exc: OSError) -> str:
    return _REASONS.get(exc.errno or 0, exc.strerror or str(exc))


def strict_json(value: Any) -> Any:
    """``value`` with NaN and infinities as None, numpy scalars and arrays as plain numbers and
    lists, paths as strings: what ``json.dumps(..., allow_nan=False)`` accepts."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy scalars and arrays
        return strict_json(value.tolist())
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


def check_output_folder(folder: Path, what: str = "output folder") -> Path:
    """Create ``folder`` (and its parents) if needed, or say why it cannot be written."""
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"the {what} {folder} is a file, not a folder: choose another path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the {what} {folder}: {_reason(exc)}") from None
    if not os.access(folder, os.W_OK):
        raise OutputError(f"the {what} {folder} is not writable by this user: choose another place")
    return folder


def check_output_file(path: Path, what: str = "output file") -> Path:
    """Check that ``path`` can become a file (its folder is created): before any work is done."""
    if path.is_dir():
        raise OutputError(f"the {what} {path} is a folder: give a file name, e.g. {path / 'predictions.csv'}")
    check_output_folder(path.parent if str(path.parent) else Path("."), f"folder of the {what}")
    return path


@contextmanager
def atomic_output(path: Path, what: str = "file", *, binary: bool = False, newline: str | None = None
                  ) -> Iterator[IO[Any]]:
    """A handle to write ``path`` whole or not at all: a temporary file beside it, renamed into
    place when the block ends without error; removed (and the error explained) otherwise."""
    check_output_file(path, what)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        mode = "wb" if binary else "w"
        with open(tmp, mode, **({} if binary else {"encoding": "utf-8", "newline": newline})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"cannot write the {what} {path}: {_reason(exc)}") from None
    finally:
        if tmp.exists():
            tmp.unlink(missing_ok=True)


def write_json(path: Path, data: Any, what: str = "JSON file") -> Path:
    """Write ``data`` as strict, indented JSON (see :func:`strict_json`), whole or not at all."""
    text = json.dumps(strict_json(data), indent=2, allow_nan=False)
    with atomic_output(path, what) as handle:
        handle.write(text + "\n")
    return path
