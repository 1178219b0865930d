"""Searching, Pyserini-style: :class:`DenseSearcher` (faiss, one index or exact over shards),
:class:`Bm25Searcher` (Lucene through Anserini), :class:`HybridSearcher` and fusion (RRF, weighted, BM25-anchored
robust or tuned); :mod:`llara_cli.search.service` is ``llara serve``.

``searcher.search(query, k)`` / ``batch_search(queries, query_ids, k)``; the ``run_*`` functions are what
``llara search`` calls."""
from __future__ import annotations

from llara_cli._lazy import lazy_exports

_EXPORTS = {
    "DenseSearcher": "llara_cli.search.dense", "run_dense_search": "llara_cli.search.dense",
    "Bm25Searcher": "llara_cli.search.bm25", "run_bm25": "llara_cli.search.bm25",
    "reciprocal_rank_fusion": "llara_cli.search.fusion", "weighted_fusion": "llara_cli.search.fusion",
    "anchored_fusion": "llara_cli.search.anchored_fusion", "tune_dense_weight": "llara_cli.search.anchored_fusion",
    "FusionMethod": "llara_cli.search.run_fusion", "fuse_run_files": "llara_cli.search.run_fusion",
    "HybridSearcher": "llara_cli.search.hybrid",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
