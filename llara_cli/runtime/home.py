"""llara's own cache directory (converted models, machine probes, BM25 indexes): ``$LLARA_HOME``."""
from __future__ import annotations

import os
from pathlib import Path

LLARA_HOME_ENV = "LLARA_HOME"
DEFAULT_LLARA_HOME = Path("~/.cache/llara")


def llara_home() -> Path:
    """llara's own cache directory: ``$LLARA_HOME``, else ``~/.cache/llara``."""
    return Path(os.environ.get(LLARA_HOME_ENV) or DEFAULT_LLARA_HOME).expanduser()
