"""Searching: dense (faiss, one index or exact over shards), BM25 (Lucene through Anserini) and fusion of runs.

Pyserini-style searcher objects -- ``DenseSearcher(index).search(query, k)`` / ``batch_search`` and
``Bm25Searcher(corpus)`` -- live in :mod:`llara_cli.search.dense` and :mod:`llara_cli.search.bm25`; the
``run_*`` functions there are what ``llara search`` calls. Imported lazily: this package pulls in nothing heavy.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {"DenseSearcher": "llara_cli.search.dense", "Bm25Searcher": "llara_cli.search.bm25"}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
