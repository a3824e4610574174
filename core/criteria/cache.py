"""Where criteria keeps what it can rebuild (token ids, the plugin listing).

``$CRITERIA_CACHE_DIR``, else ``$XDG_CACHE_HOME/criteria``, else ``~/.cache/criteria``; each user
of the cache takes a folder of its own below it. Standard library only: the listing cache reads
it before anything heavy is imported.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "CRITERIA_CACHE_DIR"


def cache_root() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "criteria"
    return Path(os.environ.get(CACHE_ENV) or default)
