"""Vectors and texts to indexes: faiss indexes in Pyserini's ``FaissSearcher`` layout (flat, HNSW, IVF, PQ),
BERT-whitening, and the Lucene BM25 index of a corpus (built once through Anserini)."""
from __future__ import annotations

from llara_cli._lazy import lazy_exports

_EXPORTS = {
    "DenseIndex": "llara_cli.index.faiss_index", "build_index": "llara_cli.index.faiss_index",
    "load_index": "llara_cli.index.faiss_index", "IndexType": "llara_cli.index.faiss_types",
    "fit_whitening": "llara_cli.index.whitening", "build_bm25_index": "llara_cli.index.lucene_index",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
