"""Output folders written whole or not at all.

A model folder is written into a temporary sibling and moved into place only once complete, so
a full disk, a crash or a second writer never leaves a half-written model where ``criteria
predict`` or the export looks for one.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

__all__ = ["KEPT_FOLDER", "atomic_folder", "kept_model_folder", "write_failure"]

#: Under a study's output folder: the models of trials that were the best when they finished.
KEPT_FOLDER = "kept"


def kept_model_folder(kept: Path, trial_number: int) -> Path:
    """Where a trial's model is kept, under a study's ``kept`` folder."""
    return kept / f"trial-{trial_number}"


@contextmanager
def atomic_folder(final: Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``final``; when the block ends without an error it
    replaces ``final`` (an existing one is moved aside first, then removed), otherwise it is
    removed and ``final`` is left as it was."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    partial = final.with_name(f".{final.name}.partial-{tag}")
    partial.mkdir()
    try:
        yield partial
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    old = final.with_name(f".{final.name}.old-{tag}")
    try:
        if final.exists():
            final.rename(old)
        partial.rename(final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        if old.exists() and not final.exists():
            old.rename(final)
        raise
    shutil.rmtree(old, ignore_errors=True)


#: How libraries that write model files say that a write failed (safetensors, torch.save's zip writer).
_WRITE_FAILURES = ("no space left", "os error 28", "disk quota", "file write failed", "unexpected pos",
                   "read-only file system", "i/o error")


def write_failure(exc: BaseException, folder: Path) -> str | None:
    """Why writing into ``folder`` failed, if ``exc`` is a failed write (a full disk, a quota, a
    read-only file system) rather than a bug; None otherwise."""
    text = str(exc).lower()
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC or "no space left" in text or "os error 28" in text:
        return f"no space left on the device of {folder}"
    if isinstance(exc, OSError) or any(marker in text for marker in _WRITE_FAILURES):
        return f"cannot write {folder}: {(str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]}"
    return None
