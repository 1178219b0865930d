"""The float copy of an index's vectors that ``llara search`` rescores compact candidates with.

A compact index (``int8``, ``binary``, ``binary-hnsw``, ``ivfpq``) finds candidates from codes; their order is
then fixed by exact inner products with the float vectors. Those vectors are copied *beside the index* at
build time (``vectors.npy``, in the index's row order, after whitening where the index is whitened) rather
than read from the embedding directories it was built from: the index directory stays self-contained (it can
be moved, copied, or outlive ``emb/``), its row order is the index's and not a concatenation of shards, and
the store can be narrower than the embeddings (``fp16``: half the disk). At search the file is opened as a
read-only memory map (shape and dtype, no data read) and only the candidate rows are read, by positioned reads
(:func:`llara_cli.search.rescoring.gather_rows`), so the search's resident memory is the compact index, not
the store.

``index_params.rescore_store`` in ``meta.json`` records the store's dtype (absent: no store).
"""
from __future__ import annotations

import logging
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from llara_cli.errors import UsageError

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)

RESCORE_FILE = "vectors.npy"
RESCORE_PARAM = "rescore_store"  # index_params key: the store's numpy dtype name


class RescoreStore(str, Enum):
    """What ``llara index --rescore-store`` keeps beside the index for rescoring."""

    AUTO = "auto"  # compact kinds: the embeddings at their stored precision; other kinds: nothing
    FP32 = "fp32"
    FP16 = "fp16"
    NONE = "none"


_STORE_DTYPES = {RescoreStore.FP32: "float32", RescoreStore.FP16: "float16"}


def resolve_rescore_store(choice: RescoreStore | str, compact: bool, embeddings_dtype: str) -> str | None:
    """The numpy dtype of the store to write (None: no store) for a ``compact`` kind or not."""
    try:
        choice = RescoreStore(choice)
    except ValueError:
        raise UsageError(f"unknown rescore store {choice!r} (choose from "
                         f"{', '.join(store.value for store in RescoreStore)})") from None
    if choice is RescoreStore.AUTO:
        return embeddings_dtype if compact else None
    return _STORE_DTYPES.get(choice)


class RescoreStoreWriter:
    """Streams ``(rows, dim)`` vectors into a ``.npy`` file chunk by chunk (never the whole array in memory)."""

    def __init__(self, path: Path, rows: int, dim: int, dtype: str) -> None:
        import numpy as np

        self.path, self.rows, self.dim, self.dtype = path, rows, dim, np.dtype(dtype)
        self.written = 0
        self.handle: BinaryIO = open(path, "wb")
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": (rows, dim)}
        np.lib.format.write_array_header_1_0(self.handle, header)

    def write(self, chunk: np.ndarray) -> None:
        """Append ``chunk (n, dim)`` float32 rows, converted to the store's dtype (must stay finite)."""
        import numpy as np

        with np.errstate(over="ignore"):
            stored = np.ascontiguousarray(chunk, dtype=self.dtype)  # (n, dim)
        if not np.isfinite(stored).all():
            raise UsageError(f"{self.path.name}: vectors overflow {self.dtype} (use --rescore-store fp32)")
        self.handle.write(stored.tobytes())
        self.written += len(stored)

    def close(self) -> None:
        self.handle.close()
        if self.written != self.rows:
            raise RuntimeError(f"rescore store got {self.written} of {self.rows} rows")


def open_rescore_vectors(directory: Path, rows: int, dim: int, dtype: str) -> Any:
    """The store as a read-only memory map ``(rows, dim)``; a missing or mismatched file raises UsageError."""
    import numpy as np

    path = directory / RESCORE_FILE
    if not path.is_file():
        raise UsageError(f"{directory}: meta.json records a rescoring store but {RESCORE_FILE} is missing")
    try:
        vectors = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise UsageError(f"{path}: not a readable .npy array ({error})") from None
    if vectors.shape != (rows, dim) or vectors.dtype.name != dtype:
        raise UsageError(f"{path}: expected {dtype} of shape ({rows}, {dim}), got {vectors.dtype} of shape "
                         f"{vectors.shape}")
    return vectors
