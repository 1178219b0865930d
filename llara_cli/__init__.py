"""llara: turn a decoder LLM into a dense retriever with LLaRA, and run the retrieval workflow.

The package root stays light: heavy libraries (torch, transformers, faiss, the JVM) are imported
lazily by the modules that need them, so ``llara --help`` starts fast.
"""
from __future__ import annotations

__version__ = "0.1.0"

from llara_cli.errors import LlaraError, UsageError

__all__ = ["__version__", "LlaraError", "UsageError"]
