"""Searching a :class:`~llara_cli.retrieval.index.DenseIndex` with query vectors: ``{query_id: [(doc_id, score)]}``.

Exact (flat) search is tuned to use BLAS matrix products for every batch: by default faiss scores fewer
than ``128000 / dim`` queries at a time (222 queries at dim 576) with a per-pair loop that is several times
slower than one matrix product (faiss wiki, "Implementation notes"; measured here: 16 queries x 100k docs
at dim 576, ~4x). ``configure_flat_search`` sets the threshold to 0; faiss' block sizes are kept (larger
database blocks measured no faster). ``benchmarks/search_speed.py`` compares it with torch matmul + topk.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from llara_cli.errors import UsageError
from llara_cli.retrieval.embeddings import COMPATIBILITY_FIELDS, EmbeddingMeta, Side, describe_differences
from llara_cli.retrieval.index import DenseIndex, IndexMeta, IndexType

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)

DEFAULT_TOP_K = 1000
DEFAULT_QUERY_BATCH_SIZE = 1024  # queries per faiss call; bounds the (batch, k) result buffers
# faiss uses BLAS when n_queries * dim >= this threshold; 0 means always (faiss 1.15 default: 128000).
FLAT_BLAS_THRESHOLD = 0
MISSING_ID = -1  # what faiss returns when fewer than k results exist
# Fields a query embedding must share with the index it searches (side is expected to differ).
QUERY_MATCH_FIELDS = tuple(name for name in COMPATIBILITY_FIELDS if name != "side")


def configure_flat_search() -> None:
    """Make exact faiss search use BLAS for any number of queries (process-wide faiss settings)."""
    import faiss

    faiss.cvar.distance_compute_blas_threshold = FLAT_BLAS_THRESHOLD


def _search_parameters(index: DenseIndex, ef_search: int | None, nprobe: int | None) -> Any:
    """Per-call faiss search parameters overriding the stored ones, or None to use the index's own."""
    import faiss

    if ef_search is not None and ef_search < 1 or nprobe is not None and nprobe < 1:
        raise UsageError(f"ef_search and nprobe must be positive, got ef_search={ef_search}, nprobe={nprobe}")
    if index.index_type is IndexType.HNSW and ef_search is not None:
        return faiss.SearchParametersHNSW(efSearch=ef_search)
    if index.index_type is IndexType.IVFPQ and nprobe is not None:
        return faiss.SearchParametersIVF(nprobe=nprobe)
    return None


def search_index(
    index: DenseIndex,
    query_vectors: np.ndarray,
    query_ids: Sequence[str],
    k: int = DEFAULT_TOP_K,
    batch_size: int = DEFAULT_QUERY_BATCH_SIZE,
    *,
    ef_search: int | None = None,
    nprobe: int | None = None,
) -> dict[str, list[tuple[str, float]]]:
    """Top-``k`` documents per query by inner product, best first: ``{query_id: [(doc_id, score), ...]}``.

    ``k`` above the index size is clamped; slots faiss leaves empty are dropped. ``ef_search`` (HNSW) and
    ``nprobe`` (IVF) override the values stored with the index for this call only.
    """
    import numpy as np

    configure_flat_search()
    query_vectors = np.asarray(query_vectors)
    if query_vectors.ndim != 2:
        raise UsageError(f"query vectors must be a 2-D array (n_queries, dim), got shape {query_vectors.shape}")
    if query_vectors.shape[1] != index.dim:
        where = f" {index.path}" if index.path else ""
        raise UsageError(f"query vectors have dim {query_vectors.shape[1]} but the index{where} has dim {index.dim}")
    if len(query_ids) != len(query_vectors):
        raise UsageError(f"{len(query_ids)} query ids for {len(query_vectors)} query vectors")
    if len(set(query_ids)) != len(query_ids):
        raise UsageError("query ids are not unique")
    if k < 1 or batch_size < 1:
        raise UsageError(f"k and batch_size must be positive, got k={k}, batch_size={batch_size}")
    params = _search_parameters(index, ef_search, nprobe)
    k = min(k, index.ntotal)
    results: dict[str, list[tuple[str, float]]] = {}
    if k == 0:
        return {query_id: [] for query_id in query_ids}
    doc_ids = index.doc_ids
    for start in range(0, len(query_ids), batch_size):
        batch = np.ascontiguousarray(query_vectors[start:start + batch_size], dtype=np.float32)  # (batch, dim)
        scores, rows = index.faiss_index.search(batch, k, params=params)  # (batch, k) each
        for query_id, query_scores, query_rows in zip(query_ids[start:start + batch_size], scores.tolist(), rows.tolist()):
            results[query_id] = [
                (doc_ids[row], score) for row, score in zip(query_rows, query_scores) if row != MISSING_ID
            ]
    return results


def check_query_model(
    index_meta: IndexMeta | EmbeddingMeta, query: EmbeddingMeta | Mapping[str, Any]
) -> None:
    """Refuse queries encoded differently from the index: names each differing field (model, pooling, ...).

    ``query`` is the query side's meta, or a mapping with whichever of its fields are known
    (e.g. ``{"model": ..., "pooling": ...}``); fields absent from it are not compared.
    """
    embedding = index_meta.embedding if isinstance(index_meta, IndexMeta) else index_meta
    query_payload = query.to_dict() if isinstance(query, EmbeddingMeta) else dict(query)
    if query_payload.get("side", Side.QUERY.value) != Side.QUERY.value:
        raise UsageError(f"query embeddings have side {query_payload['side']!r}, expected 'query'")
    differences = describe_differences(embedding.to_dict(), query_payload, QUERY_MATCH_FIELDS)
    if differences:
        raise UsageError(f"queries do not match the index (index vs queries): {'; '.join(differences)}")
