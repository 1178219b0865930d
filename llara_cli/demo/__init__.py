"""The offline demo collection behind ``llara demo-collection`` and the quickstart: a judged known-item
collection built from the Python standard library's docstrings."""
from __future__ import annotations

from llara_cli._lazy import lazy_exports

_EXPORTS = {"build_stdlib_collection": "llara_cli.demo.collection"}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
