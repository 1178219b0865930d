"""Faiss inner-product indexes on disk, in Pyserini's ``FaissSearcher`` layout.

An index directory holds ``index`` (``faiss.write_index``), ``docid`` (one id a line, row order) and
``meta.json``: the embedding meta of the merged shards (``count`` = total, one shard) plus ``index_type``
and ``index_params`` (build and search-time parameters). It is written into a temp directory and renamed
into place, so a crash never leaves a half-built index under the final name.

faiss and numpy are imported inside functions, so importing this module (the CLI does) stays cheap.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llara_cli import __version__
from llara_cli.storage.files import read_json, write_json
from llara_cli.storage.locks import sibling_lock
from llara_cli.storage.outputs import remove_leftovers
from llara_cli.errors import LlaraError, UsageError
from llara_cli.retrieval.embeddings import (
    META_FILE,
    EmbeddingMeta,
    EmbeddingSet,
    Side,
    check_compatible,
    load_embedding_meta,
    load_embeddings,
    read_ids,
)

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)

INDEX_FILE = "index"  # the names Pyserini's FaissSearcher opens
DOCID_FILE = "docid"

DEFAULT_HNSW_M = 32
DEFAULT_EF_CONSTRUCTION = 200
DEFAULT_EF_SEARCH = 256
DEFAULT_NPROBE = 32
DEFAULT_PQ_M_TARGET = 64  # sub-quantizers; the largest divisor of dim not above this is used
PQ_NBITS = 8  # bits per sub-quantizer code; fewer when too few vectors to train 2**8 centroids each
NLIST_PER_SQRT_N = 4  # default nlist = 4 * sqrt(n), the usual faiss guideline
MIN_POINTS_PER_CENTROID = 39  # below this faiss k-means warns that training is unreliable
TRAIN_POINTS_PER_CENTROID = 256  # faiss subsamples beyond this anyway; we sample first to bound memory
TRAIN_SAMPLE_SEED = 0
ADD_CHUNK_ROWS = 65_536  # vectors copied from the (mmap-ed) shards to faiss at a time


class IndexType(str, Enum):
    """Exact inner product, HNSW graph, or inverted lists with product quantization."""

    FLAT = "flat"
    HNSW = "hnsw"
    IVFPQ = "ivfpq"


INDEX_META_KEYS = ("index_type", "index_params")


@dataclass(frozen=True)
class IndexMeta:
    """``meta.json`` of an index: the embedding meta of the merged corpus plus how it was indexed."""

    embedding: EmbeddingMeta
    index_type: IndexType
    params: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.embedding.to_dict(),
            "index_type": self.index_type.value,
            "index_params": dict(self.params),
        }

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any], source: str | Path = META_FILE) -> IndexMeta:
        missing = [key for key in INDEX_META_KEYS if key not in payload]
        if missing:
            raise UsageError(f"{source}: missing field(s) {', '.join(missing)} (not an index built by `llara index`?)")
        try:
            index_type = IndexType(payload["index_type"])
        except ValueError:
            raise UsageError(f"{source}: unknown index_type {payload['index_type']!r}") from None
        params = payload["index_params"]
        if not isinstance(params, dict):
            raise UsageError(f"{source}: index_params must be an object")
        embedding_payload = {key: value for key, value in payload.items() if key not in INDEX_META_KEYS}
        return cls(EmbeddingMeta.from_dict(embedding_payload, source), index_type, params)


@dataclass
class DenseIndex:
    """A loaded index: the faiss object, doc ids in row order, and its meta (search params applied)."""

    faiss_index: Any
    doc_ids: list[str]
    meta: IndexMeta
    path: Path | None = None

    @property
    def dim(self) -> int:
        return int(self.faiss_index.d)

    @property
    def ntotal(self) -> int:
        return int(self.faiss_index.ntotal)

    @property
    def index_type(self) -> IndexType:
        return self.meta.index_type


def _largest_divisor_at_most(number: int, limit: int) -> int:
    return max(divisor for divisor in range(1, min(number, limit) + 1) if number % divisor == 0)


def _ivfpq_params(n_vectors: int, dim: int, nlist: int | None, pq_m: int | None) -> dict[str, int]:
    """Clamp nlist and the PQ code size to what ``n_vectors`` can train; warn when the user's value changes."""
    max_nlist = max(1, n_vectors // MIN_POINTS_PER_CENTROID)
    if nlist is None:
        nlist = min(max_nlist, max(1, round(NLIST_PER_SQRT_N * math.sqrt(n_vectors))))
    elif nlist < 1:
        raise UsageError(f"nlist must be positive, got {nlist}")
    elif nlist > max_nlist:
        logger.warning(
            "nlist %d is too large for %d vectors (at least %d per list); using nlist %d",
            nlist, n_vectors, MIN_POINTS_PER_CENTROID, max_nlist,
        )
        nlist = max_nlist
    if pq_m is None:
        pq_m = _largest_divisor_at_most(dim, DEFAULT_PQ_M_TARGET)
    elif pq_m < 1 or dim % pq_m:
        raise UsageError(f"pq_m must divide the embedding dim {dim}, got {pq_m}")
    # Each sub-quantizer trains 2**nbits centroids: keep MIN_POINTS_PER_CENTROID vectors per centroid.
    nbits = max(1, min(PQ_NBITS, int(math.log2(max(1, n_vectors // MIN_POINTS_PER_CENTROID)))))
    if nbits < PQ_NBITS:
        logger.warning(
            "only %d vectors: product quantizer codes use %d bits instead of %d (%d vectors needed for %d)",
            n_vectors, nbits, PQ_NBITS, MIN_POINTS_PER_CENTROID * 2**PQ_NBITS, PQ_NBITS,
        )
    return {"nlist": nlist, "pq_m": pq_m, "pq_nbits": nbits, "nprobe": min(DEFAULT_NPROBE, nlist)}


def _new_faiss_index(index_type: IndexType, dim: int, params: Mapping[str, int]) -> Any:
    import faiss

    if index_type is IndexType.FLAT:
        return faiss.IndexFlatIP(dim)
    if index_type is IndexType.HNSW:
        index = faiss.IndexHNSWFlat(dim, params["hnsw_m"], faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = params["ef_construction"]
        index.hnsw.efSearch = params["ef_search"]
        return index
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFPQ(
        quantizer, dim, params["nlist"], params["pq_m"], params["pq_nbits"], faiss.METRIC_INNER_PRODUCT
    )
    index.own_fields = True
    quantizer.this.disown()  # the IVF index now frees the quantizer
    index.nprobe = params["nprobe"]
    return index


def apply_search_params(faiss_index: Any, index_type: IndexType, params: Mapping[str, Any]) -> None:
    """Set the stored search-time parameters (``ef_search`` for HNSW, ``nprobe`` for IVF) on a faiss index."""
    if index_type is IndexType.HNSW and "ef_search" in params:
        faiss_index.hnsw.efSearch = int(params["ef_search"])
    elif index_type is IndexType.IVFPQ and "nprobe" in params:
        faiss_index.nprobe = int(params["nprobe"])


def _training_sample(vectors: Sequence[np.ndarray], sample_size: int) -> np.ndarray:
    """A seeded uniform sample of rows across shards, in row order (deterministic training)."""
    import numpy as np

    total = sum(len(block) for block in vectors)
    rows = np.sort(np.random.default_rng(TRAIN_SAMPLE_SEED).choice(total, size=min(sample_size, total), replace=False))
    offsets = np.cumsum([0] + [len(block) for block in vectors])
    parts = []
    for block, start, stop in zip(vectors, offsets[:-1], offsets[1:]):
        selected = rows[(rows >= start) & (rows < stop)] - start
        parts.append(np.asarray(block[selected], dtype=np.float32))
    return np.ascontiguousarray(np.concatenate(parts))  # (sample_size, dim)


def _check_output(out_dir: Path, inputs: Sequence[Path], overwrite: bool) -> None:
    resolved_out = out_dir.resolve()
    for directory in inputs:
        resolved_in = directory.resolve()
        if resolved_out == resolved_in or resolved_out in resolved_in.parents:
            raise UsageError(f"output {out_dir} would replace the input embeddings {directory}")
    if out_dir.exists():
        if not out_dir.is_dir():
            raise UsageError(f"{out_dir}: exists and is not a directory")
        if not overwrite:
            raise UsageError(f"{out_dir}: already exists (pass --overwrite to replace it)")


def _move_into_place(temp_dir: Path, out_dir: Path) -> None:
    """Rename the finished temp dir to ``out_dir``; an old ``out_dir`` is moved aside first, then deleted."""
    if not out_dir.exists():
        os.replace(temp_dir, out_dir)
        return
    old_dir = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old.", dir=out_dir.parent))
    os.replace(out_dir, old_dir / out_dir.name)
    try:
        os.replace(temp_dir, out_dir)
    except OSError:
        os.replace(old_dir / out_dir.name, out_dir)  # put the previous index back
        raise
    finally:
        shutil.rmtree(old_dir, ignore_errors=True)


def _load_shards(directories: Sequence[Path]) -> tuple[list[EmbeddingSet], list[str]]:
    """Check the shards agree and are passages, then open them (mmap) in shard order; doc ids must be unique."""
    metas = {directory: load_embedding_meta(directory) for directory in directories}
    check_compatible(metas)
    first_meta = metas[directories[0]]
    if first_meta.side != Side.PASSAGE.value:
        raise UsageError(f"{directories[0]}: holds {first_meta.side} embeddings; an index needs passage embeddings")
    ordered = sorted(directories, key=lambda directory: metas[directory].shard_id)
    shards = [load_embeddings(directory, mmap=True) for directory in ordered]
    doc_ids: list[str] = []
    owner: dict[str, Path] = {}
    for directory, shard in zip(ordered, shards):
        for doc_id in shard.ids:
            if doc_id in owner:
                raise UsageError(f"document {doc_id} is in both {owner[doc_id]} and {directory}")
            owner[doc_id] = directory
        doc_ids.extend(shard.ids)
    if not doc_ids:
        raise UsageError(f"no vectors in {', '.join(str(directory) for directory in ordered)}")
    return shards, doc_ids


def _write_index_dir(out_dir: Path, faiss_index: Any, doc_ids: Sequence[str], meta: IndexMeta) -> None:
    """Write ``index``, ``docid`` and ``meta.json`` into a temp dir beside ``out_dir``, then rename it into place."""
    import faiss

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    temp_dir = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        faiss.write_index(faiss_index, str(temp_dir / INDEX_FILE))
        with open(temp_dir / DOCID_FILE, "w", encoding="utf-8", newline="\n") as handle:
            handle.writelines(f"{doc_id}\n" for doc_id in doc_ids)
        write_json(temp_dir / META_FILE, meta.to_dict())
        _move_into_place(temp_dir, out_dir)
    except OSError as error:
        raise LlaraError(f"cannot write index {out_dir}: {error.strerror or error}") from None
    except RuntimeError as error:  # faiss reports I/O failures as RuntimeError
        raise LlaraError(f"cannot write index {out_dir}: {str(error).strip().splitlines()[-1]}") from None
    finally:
        if temp_dir.exists():
            shutil.rmtree(temp_dir, ignore_errors=True)


def _holding_output_lock(build: Callable[..., IndexMeta]) -> Callable[..., IndexMeta]:
    """Run ``build(embedding_dirs, out_dir, ...)`` holding the lock beside ``out_dir``: a second writer is refused."""
    @functools.wraps(build)
    def locked(embedding_dirs: Sequence[str | Path], out_dir: str | Path, *args: Any, **kwargs: Any) -> IndexMeta:
        with sibling_lock(out_dir):
            for pattern in (f".{Path(out_dir).name}.*.tmp", f".{Path(out_dir).name}.old.*"):  # from killed builds
                remove_leftovers(Path(out_dir).parent, pattern)
            return build(embedding_dirs, out_dir, *args, **kwargs)
    return locked


@_holding_output_lock
def build_index(
    embedding_dirs: Sequence[str | Path],
    out_dir: str | Path,
    index_type: IndexType | str = IndexType.FLAT,
    *,
    hnsw_m: int = DEFAULT_HNSW_M,
    ef_construction: int = DEFAULT_EF_CONSTRUCTION,
    ef_search: int = DEFAULT_EF_SEARCH,
    nlist: int | None = None,
    pq_m: int | None = None,
    nprobe: int | None = None,
    overwrite: bool = False,
) -> IndexMeta:
    """Build an inner-product index from passage embedding shards, merged in ``shard_id`` order.

    Shards must agree on model, prompt family, pooling, side, dim, normalization and corpus
    (:func:`check_compatible`), cover every shard id once, and share no doc id. ``out_dir`` is refused if
    it exists, unless ``overwrite``. For ``ivfpq``, ``nlist`` defaults to ``4*sqrt(n)`` and is clamped
    (with a warning) to what the corpus can train; ``pq_m`` defaults to the largest divisor of dim <= 64.
    Returns the meta written to ``out_dir/meta.json``.
    """
    try:
        index_type = IndexType(index_type)
    except ValueError:
        raise UsageError(
            f"unknown index type {index_type!r} (choose from {', '.join(kind.value for kind in IndexType)})"
        ) from None
    for name, value in (("hnsw_m", hnsw_m), ("ef_construction", ef_construction), ("ef_search", ef_search)):
        if value < 1:
            raise UsageError(f"{name} must be positive, got {value}")
    if nprobe is not None and nprobe < 1:
        raise UsageError(f"nprobe must be positive, got {nprobe}")
    directories = [Path(directory) for directory in embedding_dirs]
    out_dir = Path(out_dir)
    if not directories:
        raise UsageError("no embedding directories given")
    if len({directory.resolve() for directory in directories}) != len(directories):
        raise UsageError("the same embedding directory is given twice")
    _check_output(out_dir, directories, overwrite)

    shards, doc_ids = _load_shards(directories)
    first_meta = shards[0].meta
    total, dim = len(doc_ids), first_meta.dim

    if index_type is IndexType.FLAT:
        params: dict[str, int] = {}
    elif index_type is IndexType.HNSW:
        params = {"hnsw_m": hnsw_m, "ef_construction": ef_construction, "ef_search": ef_search}
    else:
        params = _ivfpq_params(total, dim, nlist, pq_m)
        if nprobe is not None:
            params["nprobe"] = min(nprobe, params["nlist"])
    faiss_index = _new_faiss_index(index_type, dim, params)
    if not faiss_index.is_trained:
        sample = _training_sample([shard.vectors for shard in shards], params["nlist"] * TRAIN_POINTS_PER_CENTROID)
        faiss_index.train(sample)
    for shard in shards:
        for start in range(0, len(shard.ids), ADD_CHUNK_ROWS):
            faiss_index.add(shard.vectors[start:start + ADD_CHUNK_ROWS].copy())  # (chunk, dim), off the mmap

    meta = IndexMeta(
        embedding=dataclasses.replace(first_meta, count=total, shard_id=0, shard_num=1, llara_version=__version__),
        index_type=index_type,
        params=params,
    )
    _write_index_dir(out_dir, faiss_index, doc_ids, meta)
    logger.info("indexed %d vectors of dim %d (%s) into %s", total, dim, index_type.value, out_dir)
    return meta


def load_index_meta(directory: str | Path) -> IndexMeta:
    """Read only an index's ``meta.json`` (cheap: no faiss)."""
    directory = Path(directory)
    meta_path = directory / META_FILE
    if not meta_path.is_file():
        raise UsageError(f"{directory}: no {META_FILE} (not an index built by `llara index`, or an interrupted build)")
    payload = read_json(meta_path)
    if not isinstance(payload, dict):
        raise UsageError(f"{meta_path}: expected a JSON object")
    return IndexMeta.from_dict(payload, source=meta_path)


def load_index(directory: str | Path) -> DenseIndex:
    """Open an index directory; missing files or a docid count that disagrees with the index raise UsageError."""
    import faiss

    directory = Path(directory)
    if not directory.is_dir():
        raise UsageError(f"{directory}: no such index directory")
    for name in (INDEX_FILE, DOCID_FILE):
        if not (directory / name).is_file():
            raise UsageError(f"{directory}: missing {name} (not a faiss index directory)")
    meta = load_index_meta(directory)
    try:
        faiss_index = faiss.read_index(str(directory / INDEX_FILE))
    except RuntimeError as error:
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise UsageError(f"{directory / INDEX_FILE}: not a readable faiss index ({reason})") from None
    doc_ids = read_ids(directory / DOCID_FILE)
    if len(doc_ids) != faiss_index.ntotal:
        raise UsageError(
            f"{directory}: {DOCID_FILE} has {len(doc_ids)} ids but the index holds {faiss_index.ntotal} vectors"
        )
    if faiss_index.d != meta.embedding.dim:
        raise UsageError(f"{directory}: {META_FILE} says dim {meta.embedding.dim} but the index has dim {faiss_index.d}")
    if faiss_index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise UsageError(f"{directory}: index does not use inner product (faiss metric {faiss_index.metric_type})")
    apply_search_params(faiss_index, meta.index_type, meta.params)
    return DenseIndex(faiss_index=faiss_index, doc_ids=doc_ids, meta=meta, path=directory)
