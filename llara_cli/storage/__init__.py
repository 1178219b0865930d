"""Storage infrastructure every package uses: atomic writes and line readers (``files``), lock files
(``locks``) and the output guard (``outputs``)."""
from __future__ import annotations

from llara_cli._lazy import lazy_exports

_EXPORTS = {
    "atomic_write": "llara_cli.storage.files", "read_json": "llara_cli.storage.files",
    "write_json": "llara_cli.storage.files", "output_lock": "llara_cli.storage.locks",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
