"""Compact index kinds: calibrated 8-bit scalar codes and sign bits in faiss's binary (Hamming) indexes.

``int8``
    faiss ``IndexScalarQuantizer(QT_8bit)`` whose per-dimension ranges are *calibrated* on the training sample
    by quantiles (``RS_quantiles``, ``INT8_CLIP_QUANTILE`` of each tail clipped) instead of the sample's min/max
    (``flat-sq8``): one outlier no longer stretches a dimension's 256 levels. ``dim`` bytes per vector.
``binary`` / ``binary-hnsw``
    One bit per dimension: ``vector > threshold`` where the threshold is the dimension's median over the
    training sample (0 for a centred, isotropic model; a decoder LLM's embeddings are far from centred, and
    raw signs would waste bits on dimensions where almost every passage is positive). Stored in faiss's
    ``IndexBinaryFlat`` (exhaustive Hamming) or ``IndexBinaryHNSW``; ``ceil(dim / 8)`` bytes per vector
    (+ ``8 * M`` for the graph). The score is ``dim - 2 * hamming``, the inner product of the two ``+-1``
    vectors: a candidate generator, meant to be rescored (:mod:`llara_cli.search.rescoring`).

The binary index is a :class:`BinarySignIndex`, which looks like a float faiss index to the rest of llara
(``train``/``add``/``search`` take float32 rows), so building, loading and sharded search stay one path. On disk
``index`` is a plain ``faiss.write_index_binary`` file (``faiss.read_index_binary`` opens it; Pyserini's
``FaissSearcher``, which calls ``read_index``, cannot) and ``binary_thresholds.npy`` holds the thresholds.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llara_cli.errors import UsageError

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)

INT8_CLIP_QUANTILE = 0.001  # share of each tail clipped when calibrating the 8-bit ranges
THRESHOLDS_FILE = "binary_thresholds.npy"
BITS_PER_BYTE = 8


def packed_bytes(dim: int) -> int:
    """Bytes of one sign-bit code of a ``dim``-dimensional vector (padded to whole bytes)."""
    return -(-dim // BITS_PER_BYTE)


def new_int8_index(dim: int) -> Any:
    """An untrained ``IndexScalarQuantizer(QT_8bit)`` with quantile-calibrated ranges, inner product."""
    import faiss

    index = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
    index.sq.rangestat = faiss.ScalarQuantizer.RS_quantiles
    index.sq.rangestat_arg = INT8_CLIP_QUANTILE
    return index


def train_index(faiss_index: Any, sample: np.ndarray) -> None:
    """``faiss_index.train(sample)``, deterministic: a scalar quantizer calibrated by quantiles (``int8``) trains on
    one faiss thread. faiss 1.15 computes those ranges in parallel with a race: on SciFact's 5,183 x 576 vectors
    of a finetuned smollm2-135m, repeated builds got different ranges and an int8 top-10 overlap with exact
    search anywhere from 0.46 to 0.98 (one thread: identical ranges, 0.98, every time)."""
    import faiss

    quantizer = getattr(faiss_index, "sq", None)
    if quantizer is None or quantizer.rangestat != faiss.ScalarQuantizer.RS_quantiles:
        faiss_index.train(sample)
        return
    with one_faiss_thread():
        faiss_index.train(sample)


@contextmanager
def one_faiss_thread() -> Iterator[None]:
    """faiss's OpenMP pool at one thread inside the block (the previous count restored after)."""
    import faiss

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(threads)


def sign_bits(rows: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """``(n, dim)`` float rows -> ``(n, ceil(dim / 8))`` uint8 codes: bit ``j`` is ``rows[:, j] > thresholds[j]``."""
    import numpy as np

    rows = np.asarray(rows, dtype=np.float32)  # (n, dim)
    if not np.isfinite(rows).all():
        raise UsageError("vectors hold NaN or infinite values: they have no sign bits (re-encode with --dtype fp32)")
    return np.packbits(rows > thresholds, axis=1)  # (n, ceil(dim / 8)); pad bits are 0 on both sides


class BinarySignIndex:
    """Sign bits of float vectors in a faiss binary index, with a float index's ``train``/``add``/``search``.

    ``search`` returns ``(scores, rows)`` with ``scores = dim - 2 * hamming`` (float32): the inner product of
    the ``+-1`` codes, so higher is better as for every other kind.
    """

    def __init__(self, dim: int, binary_index: Any, thresholds: np.ndarray | None = None) -> None:
        import faiss

        self.dim = dim
        self.binary_index = binary_index
        self.thresholds = thresholds  # (dim,) float32, None until trained
        self.metric_type = faiss.METRIC_INNER_PRODUCT  # what its scores mean, for load_index's check

    @classmethod
    def new(cls, dim: int, *, hnsw_m: int | None = None, ef_construction: int | None = None,
            ef_search: int | None = None) -> BinarySignIndex:
        """An untrained flat (``hnsw_m`` None) or HNSW binary index over ``dim``-dimensional vectors."""
        import faiss

        bits = packed_bytes(dim) * BITS_PER_BYTE
        if hnsw_m is None:
            return cls(dim, faiss.IndexBinaryFlat(bits))
        binary_index = faiss.IndexBinaryHNSW(bits, hnsw_m)
        if ef_construction is not None:
            binary_index.hnsw.efConstruction = ef_construction
        if ef_search is not None:
            binary_index.hnsw.efSearch = ef_search
        return cls(dim, binary_index)

    @property
    def d(self) -> int:
        return self.dim

    @property
    def ntotal(self) -> int:
        return int(self.binary_index.ntotal)

    @property
    def is_trained(self) -> bool:
        return self.thresholds is not None

    @property
    def hnsw(self) -> Any:
        return self.binary_index.hnsw

    @property
    def code_size(self) -> int:
        return packed_bytes(self.dim)

    def train(self, sample: np.ndarray) -> None:
        """Set each dimension's threshold to its median over ``sample (n, dim)``."""
        import numpy as np

        sample = np.asarray(sample, dtype=np.float32)  # (n, dim)
        if not np.isfinite(sample).all():
            raise UsageError("vectors hold NaN or infinite values: a binary index cannot be trained on them")
        self.thresholds = np.median(sample, axis=0).astype(np.float32)  # (dim,)

    def encode(self, rows: np.ndarray) -> np.ndarray:
        if self.thresholds is None:
            raise RuntimeError("train the binary index before adding or searching")
        return sign_bits(rows, self.thresholds)  # (n, code bytes)

    def add(self, rows: np.ndarray) -> None:
        self.binary_index.add(self.encode(rows))

    def search(self, queries: np.ndarray, k: int, params: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` by Hamming distance; ``params`` may carry an ``efSearch`` (HNSW) for this call."""
        import numpy as np

        codes = self.encode(queries)  # (n, code bytes)
        ef_search = getattr(params, "efSearch", None)
        saved = None
        if ef_search is not None and hasattr(self.binary_index, "hnsw"):
            saved, self.binary_index.hnsw.efSearch = self.binary_index.hnsw.efSearch, int(ef_search)
        try:
            distances, rows = self.binary_index.search(codes, k)  # (n, k) int32 Hamming, (n, k) int64
        finally:
            if saved is not None:
                self.binary_index.hnsw.efSearch = saved
        scores = (self.dim - 2 * distances).astype(np.float32)  # (n, k)
        scores[rows < 0] = -np.inf
        return scores, rows


def write_any_index(faiss_index: Any, directory: Path, index_file: str) -> None:
    """Write a float faiss index, or a :class:`BinarySignIndex` (binary index + its thresholds)."""
    import faiss
    import numpy as np

    if isinstance(faiss_index, BinarySignIndex):
        faiss.write_index_binary(faiss_index.binary_index, str(directory / index_file))
        np.save(directory / THRESHOLDS_FILE, faiss_index.thresholds, allow_pickle=False)
        return
    faiss.write_index(faiss_index, str(directory / index_file))


def read_binary_index(directory: Path, index_file: str, dim: int) -> BinarySignIndex:
    """Open a binary index directory; a missing or mismatched thresholds file raises UsageError naming it."""
    import faiss
    import numpy as np

    thresholds_path = directory / THRESHOLDS_FILE
    if not thresholds_path.is_file():
        raise UsageError(f"{directory}: missing {THRESHOLDS_FILE} (a binary index needs its sign thresholds)")
    try:
        binary_index = faiss.read_index_binary(str(directory / index_file))
        thresholds = np.load(thresholds_path, allow_pickle=False)
    except (RuntimeError, ValueError, OSError) as error:
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise UsageError(f"{directory / index_file}: not a readable binary faiss index ({reason})") from None
    if thresholds.shape != (dim,) or binary_index.d != packed_bytes(dim) * BITS_PER_BYTE:
        raise UsageError(f"{directory}: the binary index ({binary_index.d} bits, {thresholds.shape[0]} thresholds) "
                         f"does not match dim {dim}")
    return BinarySignIndex(dim, binary_index, thresholds.astype(np.float32))
