"""The faiss index kinds ``llara index`` builds, their parameters, and the bounded training sample.

Ten kinds, all inner product (the compact ones, ``int8`` and the two binary kinds, live in
:mod:`llara_cli.index.quantized`):

========== =========================================== ===================
kind       faiss                                       bytes per vector
========== =========================================== ===================
flat       ``IndexFlatIP`` (exact)                     ``4 * dim``
flat-fp16  ``IndexScalarQuantizer(QT_fp16)``           ``2 * dim``
flat-sq8   ``IndexScalarQuantizer(QT_8bit)``           ``dim``
hnsw       ``IndexHNSWFlat``                           ``4 * dim + 8 * M``
ivf-fp16   ``IndexIVFScalarQuantizer(QT_fp16)``        ``2 * dim + 8``
ivf-sq8    ``IndexIVFScalarQuantizer(QT_8bit)``        ``dim + 8``
ivfpq      ``IndexIVFPQ``                              ``pq_m + 8``
int8       ``IndexScalarQuantizer(QT_8bit)``, quantile ``dim``
           calibrated
binary     ``IndexBinaryFlat`` of sign bits (Hamming)  ``ceil(dim / 8)``
binary-    ``IndexBinaryHNSW`` of sign bits            ``ceil(dim / 8) + 8 * M``
hnsw
========== =========================================== ===================

The compact kinds (``int8``, ``binary``, ``binary-hnsw``, ``ivfpq``) keep a float copy of the vectors beside
the index by default (``vectors.npy``, read by memory map), which ``llara search`` rescores their candidates
with (:mod:`llara_cli.search.rescoring`).

Training (IVF centroids, the 8-bit quantizer's ranges, PQ codebooks) uses a seeded uniform sample of rows read
from the (mmap-ed) shards in chunks, capped at ``TRAIN_SAMPLE_MAX_BYTES``: the corpus never has to fit in memory.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any

from llara_cli.encode.embedding_store import read_rows
from llara_cli.errors import UsageError

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)

DEFAULT_HNSW_M = 32
DEFAULT_EF_CONSTRUCTION = 200
DEFAULT_EF_SEARCH = 256
DEFAULT_NPROBE = 32
DEFAULT_PQ_M_TARGET = 64  # sub-quantizers; the largest divisor of dim not above this is used
PQ_NBITS = 8  # bits per sub-quantizer code; fewer when too few vectors to train 2**8 centroids each
NLIST_PER_SQRT_N = 4  # default nlist = 4 * sqrt(n), the usual faiss guideline
MIN_POINTS_PER_CENTROID = 39  # below this faiss k-means warns that training is unreliable
TRAIN_POINTS_PER_CENTROID = 256  # faiss subsamples beyond this anyway; we sample first to bound memory
SQ8_TRAIN_ROWS = 65_536  # rows the 8-bit scalar quantizer learns its per-dimension ranges from
TRAIN_SAMPLE_MAX_BYTES = 2 << 30  # float32 training sample cap (2 GiB): 131k rows at dim 4096
TRAIN_SAMPLE_SEED = 0
READ_CHUNK_ROWS = 65_536  # rows read from the (mmap-ed) shards at a time, for training and adding
FLOAT32_BYTES = 4


class IndexType(str, Enum):
    """Exact, scalar-quantized (fp16 / 8-bit), HNSW graph, or inverted lists (fp16 / 8-bit / PQ codes)."""

    FLAT = "flat"
    FLAT_FP16 = "flat-fp16"
    FLAT_SQ8 = "flat-sq8"
    HNSW = "hnsw"
    IVF_FP16 = "ivf-fp16"
    IVF_SQ8 = "ivf-sq8"
    IVFPQ = "ivfpq"
    INT8 = "int8"
    BINARY = "binary"
    BINARY_HNSW = "binary-hnsw"


IVF_TYPES = frozenset({IndexType.IVF_FP16, IndexType.IVF_SQ8, IndexType.IVFPQ})
BINARY_TYPES = frozenset({IndexType.BINARY, IndexType.BINARY_HNSW})
HNSW_TYPES = frozenset({IndexType.HNSW, IndexType.BINARY_HNSW})
# The kinds whose candidates ``llara search`` rescores with the float vectors by default (a compact code).
COMPACT_TYPES = frozenset({IndexType.INT8, IndexType.IVFPQ, *BINARY_TYPES})
_SCALAR_QUANTIZERS = {  # index type -> faiss ScalarQuantizer attribute name
    IndexType.FLAT_FP16: "QT_fp16", IndexType.FLAT_SQ8: "QT_8bit",
    IndexType.IVF_FP16: "QT_fp16", IndexType.IVF_SQ8: "QT_8bit",
}


def parse_index_type(value: IndexType | str) -> IndexType:
    try:
        return IndexType(value)
    except ValueError:
        raise UsageError(
            f"unknown index type {value!r} (choose from {', '.join(kind.value for kind in IndexType)})"
        ) from None


def max_train_rows(n_vectors: int, dim: int) -> int:
    """The training sample size cap: all vectors, or as many float32 rows as fit ``TRAIN_SAMPLE_MAX_BYTES``."""
    return max(1, min(n_vectors, TRAIN_SAMPLE_MAX_BYTES // (FLOAT32_BYTES * dim)))


def _largest_divisor_at_most(number: int, limit: int) -> int:
    return max(divisor for divisor in range(1, min(number, limit) + 1) if number % divisor == 0)


def _nlist(n_vectors: int, dim: int, nlist: int | None) -> int:
    """``nlist`` (default ``4*sqrt(n)``) clamped to what the bounded sample can train; warns when it changes."""
    trainable = max_train_rows(n_vectors, dim)
    max_nlist = max(1, trainable // MIN_POINTS_PER_CENTROID)
    if nlist is None:
        return min(max_nlist, max(1, round(NLIST_PER_SQRT_N * math.sqrt(n_vectors))))
    if nlist < 1:
        raise UsageError(f"nlist must be positive, got {nlist}")
    if nlist > max_nlist:
        logger.warning(
            "nlist %d is too large for %d vectors%s (at least %d per list); using nlist %d", nlist, trainable,
            " (the training sample cap)" if trainable < n_vectors else "", MIN_POINTS_PER_CENTROID, max_nlist,
        )
        return max_nlist
    return nlist


def index_params(
    index_type: IndexType, n_vectors: int, dim: int, *, hnsw_m: int, ef_construction: int, ef_search: int,
    nlist: int | None, pq_m: int | None, nprobe: int | None,
) -> dict[str, int]:
    """The build and search parameters stored in ``meta.json`` (``index_params``) for ``index_type``."""
    for name, value in (("hnsw_m", hnsw_m), ("ef_construction", ef_construction), ("ef_search", ef_search)):
        if value < 1:
            raise UsageError(f"{name} must be positive, got {value}")
    if nprobe is not None and nprobe < 1:
        raise UsageError(f"nprobe must be positive, got {nprobe}")
    if index_type in HNSW_TYPES:
        return {"hnsw_m": hnsw_m, "ef_construction": ef_construction, "ef_search": ef_search}
    if index_type not in IVF_TYPES:
        return {}
    params = {"nlist": _nlist(n_vectors, dim, nlist)}
    params["nprobe"] = min(DEFAULT_NPROBE if nprobe is None else nprobe, params["nlist"])
    if index_type is IndexType.IVFPQ:
        params.update(_pq_params(n_vectors, dim, pq_m))
    return params


def _pq_params(n_vectors: int, dim: int, pq_m: int | None) -> dict[str, int]:
    if pq_m is None:
        pq_m = _largest_divisor_at_most(dim, DEFAULT_PQ_M_TARGET)
    elif pq_m < 1 or dim % pq_m:
        raise UsageError(f"pq_m must divide the embedding dim {dim}, got {pq_m}")
    # Each sub-quantizer trains 2**nbits centroids: keep MIN_POINTS_PER_CENTROID vectors per centroid.
    trainable = max_train_rows(n_vectors, dim)
    nbits = max(1, min(PQ_NBITS, int(math.log2(max(1, trainable // MIN_POINTS_PER_CENTROID)))))
    if nbits < PQ_NBITS:
        logger.warning(
            "only %d vectors: product quantizer codes use %d bits instead of %d (%d vectors needed for %d)",
            trainable, nbits, PQ_NBITS, MIN_POINTS_PER_CENTROID * 2**PQ_NBITS, PQ_NBITS,
        )
    return {"pq_m": pq_m, "pq_nbits": nbits}


def new_faiss_index(index_type: IndexType, dim: int, params: Mapping[str, int]) -> Any:
    """An empty (untrained where training applies) faiss inner-product index of ``index_type``."""
    import faiss

    from llara_cli.index.quantized import BinarySignIndex, new_int8_index

    metric = faiss.METRIC_INNER_PRODUCT
    if index_type is IndexType.INT8:
        return new_int8_index(dim)
    if index_type is IndexType.BINARY:
        return BinarySignIndex.new(dim)
    if index_type is IndexType.BINARY_HNSW:
        return BinarySignIndex.new(dim, hnsw_m=params["hnsw_m"], ef_construction=params["ef_construction"],
                                   ef_search=params["ef_search"])
    if index_type is IndexType.FLAT:
        return faiss.IndexFlatIP(dim)
    if index_type is IndexType.HNSW:
        index = faiss.IndexHNSWFlat(dim, params["hnsw_m"], metric)
        index.hnsw.efConstruction = params["ef_construction"]
        index.hnsw.efSearch = params["ef_search"]
        return index
    if index_type in (IndexType.FLAT_FP16, IndexType.FLAT_SQ8):
        return faiss.IndexScalarQuantizer(dim, getattr(faiss.ScalarQuantizer, _SCALAR_QUANTIZERS[index_type]), metric)
    quantizer = faiss.IndexFlatIP(dim)
    if index_type is IndexType.IVFPQ:
        index = faiss.IndexIVFPQ(quantizer, dim, params["nlist"], params["pq_m"], params["pq_nbits"], metric)
    else:
        qtype = getattr(faiss.ScalarQuantizer, _SCALAR_QUANTIZERS[index_type])
        index = faiss.IndexIVFScalarQuantizer(quantizer, dim, params["nlist"], qtype, metric)
    index.own_fields = True
    quantizer.this.disown()  # the IVF index now frees the quantizer
    index.nprobe = params["nprobe"]
    return index


def train_rows(index_type: IndexType, n_vectors: int, dim: int, params: Mapping[str, int]) -> int:
    """How many sampled rows to train ``index_type`` on (0: needs no training)."""
    if index_type in IVF_TYPES:
        wanted = params["nlist"] * TRAIN_POINTS_PER_CENTROID
    elif index_type in (IndexType.FLAT_SQ8, IndexType.INT8, *BINARY_TYPES):
        wanted = SQ8_TRAIN_ROWS  # the 8-bit ranges, or the sign thresholds (per-dimension medians)
    else:
        return 0
    return min(wanted, max_train_rows(n_vectors, dim))


def apply_search_params(faiss_index: Any, index_type: IndexType, params: Mapping[str, Any]) -> None:
    """Set the stored search-time parameters (``ef_search`` for HNSW, ``nprobe`` for IVF) on a faiss index."""
    if index_type in HNSW_TYPES and "ef_search" in params:
        faiss_index.hnsw.efSearch = int(params["ef_search"])
    elif index_type in IVF_TYPES and "nprobe" in params:
        faiss_index.nprobe = int(params["nprobe"])


def training_sample(vectors: Sequence[np.ndarray], sample_size: int) -> np.ndarray:
    """A seeded uniform sample of rows across shards, in row order (deterministic training).

    Only the sampled rows are read (one file read per run of consecutive rows), widened to float32: the
    shards may be memory maps of any size, and only the ``(sample_size, dim)`` sample is ever in memory.
    """
    import numpy as np

    total = sum(len(block) for block in vectors)
    size = min(sample_size, total)
    rows = np.sort(np.random.default_rng(TRAIN_SAMPLE_SEED).choice(total, size=size, replace=False))
    sample = np.empty((size, vectors[0].shape[1]), dtype=np.float32)  # (sample_size, dim)
    filled, offset = 0, 0
    for block in vectors:
        low, high = np.searchsorted(rows, [offset, offset + len(block)])
        local = rows[low:high] - offset
        run_starts = np.flatnonzero(np.diff(local, prepend=-2) != 1)  # where a run of consecutive rows begins
        run_stops = np.append(run_starts[1:], len(local))
        for run_start, run_stop in zip(run_starts.tolist(), run_stops.tolist()):
            count = run_stop - run_start
            first = int(local[run_start])
            sample[filled:filled + count] = read_rows(block, first, first + count)
            filled += count
        offset += len(block)
    return sample


def iter_float32_chunks(block: np.ndarray):
    """``block`` (float32 or float16, in memory or a memory map) as float32 chunks of ``READ_CHUNK_ROWS`` rows."""
    for start in range(0, len(block), READ_CHUNK_ROWS):
        yield read_rows(block, start, min(start + READ_CHUNK_ROWS, len(block)))  # (chunk, dim)
