"""Vectors and texts to indexes: faiss indexes in Pyserini's ``FaissSearcher`` layout (flat, HNSW, IVF, PQ),
BERT-whitening, the Lucene BM25 index of a corpus (built once through Anserini), and external engines: Milvus
(embedded or a cluster) and a Parquet interchange export (:mod:`llara_cli.index.engines`)."""
from __future__ import annotations

from llara_cli._lazy import lazy_exports

_EXPORTS = {
    "DenseIndex": "llara_cli.index.faiss_index", "build_index": "llara_cli.index.faiss_index",
    "load_index": "llara_cli.index.faiss_index", "IndexType": "llara_cli.index.faiss_types",
    "fit_whitening": "llara_cli.index.whitening", "build_bm25_index": "llara_cli.index.lucene_index",
    "Engine": "llara_cli.index.engines", "open_engine_index": "llara_cli.index.engines",
    "build_milvus_index": "llara_cli.index.milvus_engine", "MilvusIndex": "llara_cli.index.milvus_engine",
    "export_parquet": "llara_cli.index.parquet_export",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
