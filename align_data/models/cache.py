"""Where prepared model folders live: ``$ALIGN_DATA_CACHE`` or ``~/.cache/align-data``."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The model cache root; created on first use."""
    root = Path(os.environ.get("ALIGN_DATA_CACHE", Path.home() / ".cache" / "align-data"))
    root.mkdir(parents=True, exist_ok=True)
    return root
