"""The machine llara runs on: the compute dtype ``auto`` picks, the thread budget, llara's home directory,
and the JVM that runs Anserini."""
from __future__ import annotations

from llara_cli._lazy import lazy_exports

_EXPORTS = {
    "resolve_dtype": "llara_cli.runtime.precision", "resolve_precision": "llara_cli.runtime.precision",
    "detect_hardware": "llara_cli.runtime.precision",
    "configure_threads": "llara_cli.runtime.threads", "thread_budget": "llara_cli.runtime.threads",
    "llara_home": "llara_cli.runtime.home", "start_jvm": "llara_cli.runtime.jvm",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
