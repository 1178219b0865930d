"""The ``llara`` command line: a root Typer app (``app``, ``main``) and one thin module per command over the library."""
from __future__ import annotations

from llara_cli._lazy import lazy_exports

_EXPORTS = {"app": "llara_cli.cli.app", "main": "llara_cli.cli.app"}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
