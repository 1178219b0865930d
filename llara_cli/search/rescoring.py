"""Rescoring: a compact index proposes ``k * factor`` candidates, the float vectors order them.

A binary or 8-bit index ranks by an approximation of the inner product; the true top ``k`` is almost always
among its top ``k * factor`` (measured in ``benchmarks/scale.py`` and ``docs/benchmarks.md``). Those candidates
are rescored with exact inner products against the index's float store (``vectors.npy``, a memory map:
:mod:`llara_cli.index.rescore_store`), re-sorted, and cut to ``k``. With a float32 store the scores are the
ones a flat index gives (the same per-pair SIMD dot product, :func:`faiss.fvec_inner_products_by_idx`).

Only the candidate rows are read, for a few queries at a time (at most ``RESCORE_MAX_BYTES`` of float32
rows), each with one positioned read (``os.preadv``) from the store's ``.npy`` straight into the buffer.
Not through the memory map: touching a row through a mapping maps the kernel's whole fault-around window
(64 KB by default) into the process, so random candidates map most of the store, and it counts as resident
memory (measured: a 0.8 GB store rescored through the map peaked at index + store; with positioned reads, at
the index plus the buffer). The page cache still keeps hot rows in RAM, outside the process.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llara_cli.errors import LlaraError, UsageError
from llara_cli.index.faiss_types import IndexType

if TYPE_CHECKING:
    import numpy as np

    from llara_cli.index.faiss_index import DenseIndex

logger = logging.getLogger(__name__)

# Candidates fetched per wanted result when rescoring, by kind; by default never fewer than
# DEFAULT_MIN_CANDIDATES, so a small k (a service's top 10) still rescores enough (docs/benchmarks.md: binary
# codes of all-MiniLM-L6-v2 on SciFact keep recall@10 0.945 of exact from 100 candidates, 0.998 from 500).
DEFAULT_RESCORE_FACTORS = {
    IndexType.INT8: 4, IndexType.IVFPQ: 4, IndexType.BINARY: 10, IndexType.BINARY_HNSW: 10,
}
FALLBACK_RESCORE_FACTOR = 4  # a float index given a store explicitly
DEFAULT_MIN_CANDIDATES = 500
RESCORE_MAX_BYTES = 32 << 20  # float32 candidate rows gathered at a time (one buffer alive at once)


def resolve_rescore_factor(index: DenseIndex, factor: int | None) -> int:
    """Candidates per result for ``index``: ``factor``, or the kind's default when it has a store (else 1).

    An explicit ``factor`` above 1 on an index without a float store is refused: there is nothing to rescore
    with, and silently returning the compact scores would hide it.
    """
    if factor is not None and factor < 1:
        raise UsageError(f"rescore factor must be at least 1, got {factor}")
    if index.rescore_vectors is None:
        if factor is not None and factor > 1:
            where = f"{index.path}" if index.path else "the index"
            raise UsageError(f"{where} has no float vectors to rescore with (built with --rescore-store none); "
                             "rebuild it with `llara index --rescore-store fp32`, or pass --rescore-factor 1")
        return 1
    if factor is not None:
        return factor
    return DEFAULT_RESCORE_FACTORS.get(index.index_type, FALLBACK_RESCORE_FACTOR)


def candidate_count(k: int, factor: int, explicit: bool, ntotal: int) -> int:
    """How many candidates to fetch for ``k`` results: ``k * factor`` (at least ``DEFAULT_MIN_CANDIDATES`` when the
    factor is the kind's default), at most the index size; ``k`` without rescoring."""
    if factor <= 1:
        return min(k, ntotal)
    wanted = k * factor if explicit else max(k * factor, DEFAULT_MIN_CANDIDATES)
    return min(wanted, ntotal)


def check_rescorable(directories: Sequence[Path], metas: Sequence[Any], factor: int | None) -> None:
    """Refuse an explicit ``factor`` above 1 for index (shards) without a float store, before any work."""
    from llara_cli.index.rescore_store import RESCORE_PARAM

    if factor is None or factor <= 1:
        return
    for directory, meta in zip(directories, metas):
        if RESCORE_PARAM not in meta.params:
            raise UsageError(f"{directory} has no float vectors to rescore with (built with --rescore-store none); "
                             "rebuild it with `llara index --rescore-store fp32`, or pass --rescore-factor 1")


def gather_rows(vectors: Any, rows: np.ndarray) -> np.ndarray:
    """``vectors[rows]`` as float32 ``(len(rows), dim)``: from a memory-mapped ``.npy`` by one positioned read a
    row (nothing mapped into the process), from an in-memory array by indexing."""
    import numpy as np

    filename = getattr(vectors, "filename", None)
    if not isinstance(vectors, np.memmap) or filename is None:
        return np.ascontiguousarray(vectors[rows], dtype=np.float32)
    dim = vectors.shape[1]
    row_bytes = dim * vectors.dtype.itemsize
    gathered = np.empty((len(rows), dim), dtype=vectors.dtype)  # (n_rows, dim)
    buffer = memoryview(gathered).cast("B")
    descriptor = os.open(filename, os.O_RDONLY)
    try:
        for position, row in enumerate(rows.tolist()):
            start = position * row_bytes
            if os.preadv(descriptor, [buffer[start:start + row_bytes]], vectors.offset + row * row_bytes) != row_bytes:
                raise LlaraError(f"{filename}: row {row} is cut short (the rescoring store is truncated)")
    finally:
        os.close(descriptor)
    return gathered.astype(np.float32, copy=False)


def rescore_candidates(vectors: Any, queries: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner products of ``queries (n, dim)`` with their candidate ``rows (n, c)`` read from ``vectors``
    (``(ntotal, dim)``, float32 or float16, usually a memory map); returns the best ``k`` ``(scores, rows)``,
    each ``(n, min(k, c))``, best first (stable for ties); missing candidates (row < 0) score ``-inf``."""
    import faiss
    import numpy as np

    queries = np.ascontiguousarray(queries, dtype=np.float32)  # (n, dim)
    rows = np.ascontiguousarray(rows, dtype=np.int64)  # (n, c)
    n_queries, n_candidates = rows.shape
    dim = queries.shape[1]
    scores = np.full(rows.shape, -np.inf, dtype=np.float32)  # (n, c)
    step = max(1, RESCORE_MAX_BYTES // max(1, n_candidates * dim * 4))  # queries per gather
    for start in range(0, n_queries, step):
        block_rows = rows[start:start + step]  # (b, c)
        present = block_rows >= 0
        unique_rows = np.unique(block_rows[present])  # sorted: the store is read front to back
        if len(unique_rows) == 0:
            continue
        gathered = gather_rows(vectors, unique_rows)  # (u, dim) float32
        positions = np.where(present, np.searchsorted(unique_rows, block_rows), -1).astype(np.int64)  # (b, c)
        block_queries = np.ascontiguousarray(queries[start:start + step])  # (b, dim)
        block_scores = np.empty(block_rows.shape, dtype=np.float32)  # (b, c)
        faiss.fvec_inner_products_by_idx(faiss.swig_ptr(block_scores), faiss.swig_ptr(block_queries),
                                         faiss.swig_ptr(gathered), faiss.swig_ptr(positions), dim,
                                         block_rows.shape[0], n_candidates)
        block_scores[~present] = -np.inf
        scores[start:start + step] = block_scores
        del gathered  # before the next step allocates its buffer: one alive at a time
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # (n, min(k, c))
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(rows, order, axis=1)
