"""Searching a :class:`~llara_cli.index.faiss_index.DenseIndex` with query vectors: ``{query_id: [(doc_id, score)]}``.

Exact (flat) search is tuned to use BLAS matrix products from a few queries on: by default faiss 1.15 scores
batches with ``n_queries * dim < 128000`` (fewer than 222 queries at dim 576) with a per-pair loop, several
times slower than one matrix product (faiss wiki, "Implementation notes"). Measured on 100k x 576 vectors,
one thread: 16 queries 63 -> 187 QPS, 64 queries 82 -> 454 QPS; below ~4 queries the loop is as fast or
faster, so ``configure_flat_search`` moves the threshold to ``4 * dim``. ``benchmarks/search_speed.py``
compares the result with torch matmul + topk.

BLAS tiles the score matrix by the shape of the database block, so the same (query, document) pair can
score one float32 ulp apart in a whole index and in a shard of it, enough to change a 6-decimal TREC score.
Flat results are therefore rescored with faiss' per-pair ``fvec_inner_products_by_idx`` (the same SIMD dot
product wherever the document sits; ``n_queries * k * dim`` flops, small beside the search), so a search
over index shards writes exactly the run of one flat index (:mod:`llara_cli.search.sharded`).

A compact index (``int8``, binary, IVF-PQ) with a float store is searched for ``k * rescore_factor``
candidates, which are rescored with the float vectors and cut to ``k`` (:mod:`llara_cli.search.rescoring`).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from llara_cli.encode.embedding_store import check_finite
from llara_cli.errors import UsageError
from llara_cli.index.faiss_index import DenseIndex
from llara_cli.index.faiss_types import HNSW_TYPES, IVF_TYPES, IndexType

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)

DEFAULT_TOP_K = 1000
DEFAULT_QUERY_BATCH_SIZE = 1024  # queries per faiss call; bounds the (batch, k) result buffers
# faiss uses BLAS when n_queries * dim >= distance_compute_blas_threshold (faiss 1.15 default: 128000);
# llara sets it to this many queries' worth, where BLAS and the per-pair loop break even.
FLAT_BLAS_MIN_QUERIES = 4
MISSING_ID = -1  # what faiss returns when fewer than k results exist


def configure_flat_search(dim: int) -> None:
    """Make exact faiss search use BLAS from ``FLAT_BLAS_MIN_QUERIES`` queries on (a process-wide faiss setting)."""
    import faiss

    faiss.cvar.distance_compute_blas_threshold = FLAT_BLAS_MIN_QUERIES * dim


def _search_parameters(index: DenseIndex, ef_search: int | None, nprobe: int | None) -> Any:
    """Per-call faiss search parameters overriding the stored ones, or None to use the index's own."""
    import faiss

    if ef_search is not None and ef_search < 1 or nprobe is not None and nprobe < 1:
        raise UsageError(f"ef_search and nprobe must be positive, got ef_search={ef_search}, nprobe={nprobe}")
    if index.index_type in HNSW_TYPES and ef_search is not None:
        return faiss.SearchParametersHNSW(efSearch=ef_search)
    if index.index_type in IVF_TYPES and nprobe is not None:
        return faiss.SearchParametersIVF(nprobe=nprobe)
    return None


def check_queries(index: DenseIndex, query_vectors: np.ndarray, query_ids: Sequence[str]) -> np.ndarray:
    """``query_vectors`` as a 2-D array after checking it against the index and the ids (UsageError if not)."""
    import numpy as np

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
    check_finite(query_vectors, list(query_ids), "query vectors")  # a NaN query would silently match nothing
    return query_vectors


def search_rows(
    index: DenseIndex,
    query_vectors: np.ndarray,
    k: int,
    batch_size: int = DEFAULT_QUERY_BATCH_SIZE,
    *,
    ef_search: int | None = None,
    nprobe: int | None = None,
    rescore_factor: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, rows)``, each ``(n_queries, min(k, ntotal))``, best first; empty slots have row ``MISSING_ID``.

    ``rescore_factor`` (default: the kind's, when the index has a float store, and at least
    ``DEFAULT_MIN_CANDIDATES`` candidates; 1: no rescoring) fetches ``k * rescore_factor`` candidates and
    rescores them with the float vectors.
    """
    import numpy as np

    from llara_cli.search.rescoring import candidate_count, rescore_candidates, resolve_rescore_factor

    if k < 1 or batch_size < 1:
        raise UsageError(f"k and batch_size must be positive, got k={k}, batch_size={batch_size}")
    params = _search_parameters(index, ef_search, nprobe)
    factor = resolve_rescore_factor(index, rescore_factor)
    configure_flat_search(int(index.faiss_index.d))
    k = min(k, index.ntotal)
    fetch = candidate_count(k, factor, rescore_factor is not None, index.ntotal)
    scores = np.empty((len(query_vectors), k), dtype=np.float32)  # (n_queries, k)
    rows = np.empty((len(query_vectors), k), dtype=np.int64)  # (n_queries, k)
    if k == 0:
        return scores, rows
    for start in range(0, len(query_vectors), batch_size):
        batch = np.ascontiguousarray(query_vectors[start:start + batch_size], dtype=np.float32)  # (batch, dim)
        batch = index.prepare_queries(batch)  # (batch, stored dim): whitened for a whitened index
        batch_scores, batch_rows = index.faiss_index.search(batch, fetch, params=params)  # (batch, fetch) each
        if factor > 1:
            batch_scores, batch_rows = rescore_candidates(index.rescore_vectors, batch, batch_rows, k)
        elif index.index_type is IndexType.FLAT:
            batch_scores, batch_rows = _rescore_per_pair(index.faiss_index, batch, batch_rows)
        scores[start:start + len(batch)], rows[start:start + len(batch)] = batch_scores, batch_rows
    return scores, rows


def _rescore_per_pair(faiss_index: Any, queries: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact flat scores of the found rows, independent of BLAS tiling, re-sorted best first (stable)."""
    import faiss
    import numpy as np

    rows = np.ascontiguousarray(rows, dtype=np.int64)  # (batch, k)
    scores = np.empty(rows.shape, dtype=np.float32)  # (batch, k); MISSING_ID rows score -inf
    faiss.fvec_inner_products_by_idx(faiss.swig_ptr(scores), faiss.swig_ptr(queries), faiss_index.get_xb(),
                                     faiss.swig_ptr(rows), queries.shape[1], rows.shape[0], rows.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")  # (batch, k)
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(rows, order, axis=1)


def search_index(
    index: DenseIndex,
    query_vectors: np.ndarray,
    query_ids: Sequence[str],
    k: int = DEFAULT_TOP_K,
    batch_size: int = DEFAULT_QUERY_BATCH_SIZE,
    *,
    ef_search: int | None = None,
    nprobe: int | None = None,
    rescore_factor: int | None = None,
) -> dict[str, list[tuple[str, float]]]:
    """Top-``k`` documents per query by inner product, best first: ``{query_id: [(doc_id, score), ...]}``.

    ``k`` above the index size is clamped; slots faiss leaves empty are dropped. ``ef_search`` (HNSW) and
    ``nprobe`` (IVF) override the values stored with the index for this call only; ``rescore_factor`` as in
    :func:`search_rows`.
    """
    query_vectors = check_queries(index, query_vectors, query_ids)
    scores, rows = search_rows(index, query_vectors, k, batch_size, ef_search=ef_search, nprobe=nprobe,
                               rescore_factor=rescore_factor)
    doc_ids = index.doc_ids
    return {
        query_id: [(doc_ids[row], score) for row, score in zip(query_rows, query_scores) if row != MISSING_ID]
        for query_id, query_scores, query_rows in zip(query_ids, scores.tolist(), rows.tolist())
    }
