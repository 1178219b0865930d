"""Faiss inner-product indexes on disk, in Pyserini's ``FaissSearcher`` layout.

An index directory holds ``index`` (``faiss.write_index``), ``docid`` (one id a line, row order) and
``meta.json``: the embedding meta of the merged shards (``count`` = total, one shard) plus ``index_type``
and ``index_params`` (build and search-time parameters). It is written into a temp directory and renamed
into place, so a crash never leaves a half-built index under the final name.

A *partial* index holds only some embedding shards of a corpus (``corpus_shards`` of ``corpus_shard_num`` in
its meta): one shard of an index that ``llara search`` searches shard by shard
(:mod:`llara_cli.search.sharded`). The index kinds live in :mod:`llara_cli.index.faiss_types`.

A *compact* index (``int8``, ``binary``, ``binary-hnsw``, ``ivfpq``) keeps, by default, a float copy of its
vectors beside it (``vectors.npy``, :mod:`llara_cli.index.rescore_store`) that search rescores candidates
with; a binary index's ``index`` is a faiss *binary* index (:mod:`llara_cli.index.quantized`).

A *whitened* index (``index_params.whiten``) holds the passages after the corpus's whitening transform
(:mod:`llara_cli.index.whitening`, file ``whitening``); a *projected* one (``index_params.pca``) after the
projection onto the corpus's principal directions (:mod:`llara_cli.index.pca`, file ``pca``). Queries pass the
same transform before search.

faiss and numpy are imported inside functions, so importing this module (the CLI does) stays cheap.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llara_cli import __version__
from llara_cli.encode.embedding_store import (
    META_FILE,
    EmbeddingMeta,
    EmbeddingSet,
    Side,
    check_compatible,
    load_embedding_meta,
    load_embeddings,
)
from llara_cli.encode.shards import expand_shard_dirs
from llara_cli.errors import LlaraError, UsageError
from llara_cli.index.doc_ids import read_doc_ids
from llara_cli.index.faiss_types import (  # re-exported: the index kinds and their defaults
    BINARY_TYPES,
    COMPACT_TYPES,
    DEFAULT_EF_CONSTRUCTION,
    DEFAULT_EF_SEARCH,
    DEFAULT_HNSW_M,
    IndexType,
    apply_search_params,
    index_params,
    iter_float32_chunks,
    max_train_rows,
    new_faiss_index,
    parse_index_type,
    train_rows,
    training_sample,
)
from llara_cli.index.integrity import CHECKSUMS_KEY, check_checksums, file_checksums
from llara_cli.index.pca import PCA_FILE, PCA_PARAM, check_pca_dim, fit_pca
from llara_cli.index.quantized import read_binary_index, train_index, write_any_index
from llara_cli.index.rescore_store import (
    RESCORE_FILE,
    RESCORE_PARAM,
    RescoreStore,
    RescoreStoreWriter,
    open_rescore_vectors,
    resolve_rescore_store,
)
from llara_cli.index.whitening import (
    WHITENING_FILE,
    WHITENING_PARAM,
    apply_whitening,
    check_whitening_dim,
    fit_whitening,
    load_whitening,
    save_whitening,
)
from llara_cli.storage.files import read_json, write_json
from llara_cli.storage.locks import sibling_lock
from llara_cli.storage.outputs import OutputKind, check_output_directory, remove_leftovers

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)

INDEX_FILE = "index"  # the names Pyserini's FaissSearcher opens
DOCID_FILE = "docid"

INDEX_META_KEYS = ("index_type", "index_params")
CORPUS_SHARD_KEYS = ("corpus_shards", "corpus_shard_num")  # optional: absent means the whole corpus


@dataclass(frozen=True)
class IndexMeta:
    """``meta.json`` of an index: the embedding meta of the merged corpus plus how it was indexed."""

    embedding: EmbeddingMeta
    index_type: IndexType
    params: Mapping[str, Any] = field(default_factory=dict, hash=False)
    corpus_shards: tuple[int, ...] | None = None  # the embedding shard ids a partial index holds
    corpus_shard_num: int | None = None

    def to_dict(self) -> dict[str, Any]:
        payload = {
            **self.embedding.to_dict(),
            "index_type": self.index_type.value,
            "index_params": dict(self.params),
        }
        if self.corpus_shards is not None:
            payload.update(corpus_shards=list(self.corpus_shards), corpus_shard_num=self.corpus_shard_num)
        return payload

    def covered_shards(self) -> tuple[tuple[int, ...], int]:
        """``(embedding shard ids, of how many)`` this index holds: ``((0,), 1)`` for a whole-corpus index."""
        if self.corpus_shards is None:
            return (0,), 1
        return self.corpus_shards, int(self.corpus_shard_num or 0)

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
        shards, shard_num = payload.get("corpus_shards"), payload.get("corpus_shard_num")
        if shards is not None and not (
            isinstance(shards, list) and all(isinstance(shard, int) for shard in shards)
            and isinstance(shard_num, int) and all(0 <= shard < shard_num for shard in shards)
        ):
            raise UsageError(f"{source}: corpus_shards must be a list of shard ids below corpus_shard_num")
        embedding_payload = {
            key: value for key, value in payload.items() if key not in INDEX_META_KEYS + CORPUS_SHARD_KEYS
        }
        return cls(EmbeddingMeta.from_dict(embedding_payload, source), index_type, params,
                   tuple(shards) if shards is not None else None, shard_num if shards is not None else None)


@dataclass
class DenseIndex:
    """A loaded index: the faiss object, doc ids in row order, its meta (search params applied) and, for a
    whitened or projected (``--pca``) index, the transform queries pass before search (then L2 norm)."""

    faiss_index: Any
    doc_ids: Sequence[str]  # a DocIds when loaded from a directory
    meta: IndexMeta
    path: Path | None = None
    transform: Any = None
    rescore_vectors: Any = None  # (ntotal, stored dim) read-only memory map of vectors.npy, if the index has one

    @property
    def dim(self) -> int:
        """The dimension of the query vectors it takes (the embeddings', also for a whitened or projected index)."""
        return int(self.transform.d_in) if self.transform is not None else int(self.faiss_index.d)

    def prepare_queries(self, query_vectors: np.ndarray) -> np.ndarray:
        """``(n, dim)`` float32 query vectors as the index stores passages: transformed where it is whitened or
        projected."""
        return apply_whitening(self.transform, query_vectors) if self.transform is not None else query_vectors

    @property
    def ntotal(self) -> int:
        return int(self.faiss_index.ntotal)

    @property
    def index_type(self) -> IndexType:
        return self.meta.index_type


def _check_output(out_dir: Path, inputs: Sequence[Path], overwrite: bool) -> None:
    check_output_directory(out_dir, OutputKind.FAISS_INDEX, inputs, overwrite)


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


def _load_shards(directories: Sequence[Path], partial: bool) -> tuple[list[EmbeddingSet], list[str]]:
    """Check the shards agree and are passages, then open them (mmap) in shard order; doc ids must be unique."""
    metas = {directory: load_embedding_meta(directory) for directory in directories}
    check_compatible(metas, require_all_shards=not partial)
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


def _write_index_dir(out_dir: Path, faiss_index: Any, doc_ids: Sequence[str], meta: IndexMeta,
                     transform: Any = None, temp_dir: Path | None = None,
                     transform_file: str = WHITENING_FILE) -> IndexMeta:
    """Write ``index``, ``docid``, ``meta.json`` (and ``transform``, the whitening or the ``--pca`` projection, as
    ``transform_file``) into a temp dir beside ``out_dir`` (or the given ``temp_dir``, which may already hold the
    rescoring store), then rename it into place; ``meta.json`` records the sha256 of each file but the rescoring
    store (read by memory map, never whole). Returns the meta as written."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    if temp_dir is None:
        temp_dir = _new_temp_dir(out_dir)
    try:
        write_any_index(faiss_index, temp_dir, INDEX_FILE)
        with open(temp_dir / DOCID_FILE, "w", encoding="utf-8", newline="\n") as handle:
            handle.writelines(f"{doc_id}\n" for doc_id in doc_ids)
        if transform is not None:
            save_whitening(transform, temp_dir, transform_file)
        checksums = file_checksums(temp_dir, sorted(path.name for path in temp_dir.iterdir()
                                                    if path.name != RESCORE_FILE))
        meta = dataclasses.replace(meta, embedding=dataclasses.replace(
            meta.embedding, extra={**meta.embedding.extra, CHECKSUMS_KEY: checksums}))
        write_json(temp_dir / META_FILE, meta.to_dict())
        _move_into_place(temp_dir, out_dir)
        return meta
    except OSError as error:
        raise LlaraError(f"cannot write index {out_dir}: {error.strerror or error}") from None
    except RuntimeError as error:  # faiss reports I/O failures as RuntimeError
        raise LlaraError(f"cannot write index {out_dir}: {str(error).strip().splitlines()[-1]}") from None
    finally:
        if temp_dir.exists():
            shutil.rmtree(temp_dir, ignore_errors=True)


def _new_temp_dir(out_dir: Path) -> Path:
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))


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
    partial: bool = False,
    whiten: int | None = None,
    rescore_store: RescoreStore | str = RescoreStore.AUTO,
    pca: int | None = None,
) -> IndexMeta:
    """Build an inner-product index from passage embedding shards, merged in ``shard_id`` order.

    Shards must agree on model, prompt family, pooling, side, dim, normalization and corpus
    (:func:`check_compatible`), cover every shard id once, and share no doc id. ``out_dir`` is refused if
    it exists, unless ``overwrite``. A directory of shard directories stands for its shards. With ``partial``
    the shards may be a subset of the corpus: the index records which (one shard of a sharded index). For the
    IVF kinds ``nlist`` defaults to ``4*sqrt(n)`` and is clamped (with a warning) to what the bounded training
    sample can train; ``pq_m`` defaults to the largest divisor of dim <= 64.
    ``whiten`` (a dimension) fits the corpus's whitening on a bounded sample of the passages and indexes the
    whitened passages (not with ``partial``: each shard of a sharded index would get its own transform).
    ``pca`` (a dimension) likewise fits the projection onto the passages' principal directions
    (:mod:`llara_cli.index.pca`) and indexes the projected passages; not together with ``whiten``.
    ``rescore_store`` (``auto``: the embeddings at their stored precision for the compact kinds, nothing for
    the others; ``fp32``; ``fp16``; ``none``) copies the indexed vectors beside the index, in row order, for
    ``llara search`` to rescore candidates with. Returns the meta written to ``out_dir/meta.json``.
    """
    index_type = parse_index_type(index_type)
    if not embedding_dirs:
        raise UsageError("no embedding directories given")
    directories = expand_shard_dirs([Path(directory) for directory in embedding_dirs])
    out_dir = Path(out_dir)
    if len({directory.resolve() for directory in directories}) != len(directories):
        raise UsageError("the same embedding directory is given twice")
    _check_output(out_dir, directories, overwrite)

    if whiten is not None and pca is not None:
        raise UsageError("--whiten and --pca are two transforms of the passages: give one")
    for option, value in (("--whiten", whiten), ("--pca", pca)):
        if value is not None and partial:
            raise UsageError(f"{option} cannot build one shard of a sharded index (--partial): each shard would "
                             "get its own transform; transform a whole-corpus index")

    shards, doc_ids = _load_shards(directories, partial)
    first_meta = shards[0].meta
    total, dim = len(doc_ids), first_meta.dim
    vectors = [shard.vectors for shard in shards]  # (rows, dim) each, memory maps
    transform = None  # what passages and queries pass: the whitening or the --pca projection
    if whiten is not None:
        check_whitening_dim(whiten, dim, total)
        transform = fit_whitening(training_sample(vectors, max_train_rows(total, dim)), whiten)
    elif pca is not None:
        check_pca_dim(pca, dim, total)
        transform = fit_pca(training_sample(vectors, max_train_rows(total, dim)), pca)
    index_dim = whiten or pca or dim

    def stored(rows: np.ndarray) -> np.ndarray:  # (n, dim) float32 -> (n, index_dim), as the index holds them
        return apply_whitening(transform, rows) if transform is not None else rows

    params = index_params(index_type, total, index_dim, hnsw_m=hnsw_m, ef_construction=ef_construction,
                          ef_search=ef_search, nlist=nlist, pq_m=pq_m, nprobe=nprobe)
    store_dtype = resolve_rescore_store(rescore_store, index_type in COMPACT_TYPES, first_meta.dtype)
    faiss_index = new_faiss_index(index_type, index_dim, params)
    sample_rows = train_rows(index_type, total, index_dim, params)
    temp_dir = _new_temp_dir(out_dir)
    try:
        if sample_rows:
            train_index(faiss_index, stored(training_sample(vectors, sample_rows)))
        store = RescoreStoreWriter(temp_dir / RESCORE_FILE, total, index_dim, store_dtype) if store_dtype else None
        try:
            for block in vectors:
                for chunk in iter_float32_chunks(block):
                    chunk = stored(chunk)  # (chunk, index_dim) float32, read off the mmap
                    faiss_index.add(chunk)
                    if store is not None:
                        store.write(chunk)
        finally:
            if store is not None:
                store.close()
    except OSError as error:
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise LlaraError(f"cannot write index {out_dir}: {error.strerror or error}") from None
    except BaseException:
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    if whiten is not None:
        params = {**params, WHITENING_PARAM: whiten}
    if pca is not None:
        params = {**params, PCA_PARAM: pca}
    if store_dtype is not None:
        params = {**params, RESCORE_PARAM: store_dtype}

    covered = tuple(sorted(shard.meta.shard_id for shard in shards))
    meta = IndexMeta(
        embedding=dataclasses.replace(first_meta, count=total, shard_id=0, shard_num=1, llara_version=__version__),
        index_type=index_type,
        params=params,
        corpus_shards=covered if partial else None,
        corpus_shard_num=first_meta.shard_num if partial else None,
    )
    meta = _write_index_dir(out_dir, faiss_index, doc_ids, meta, transform, temp_dir,
                            PCA_FILE if pca is not None else WHITENING_FILE)
    logger.info("indexed %d vectors of dim %d (%s%s) into %s", total, dim, index_type.value,
                f", whitened to {whiten}" if whiten is not None else
                f", projected to {pca}" if pca is not None else "", out_dir)
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
    doc_ids = read_doc_ids(directory / DOCID_FILE)  # first: its checks' temporaries are gone before the index loads
    whiten, pca = meta.params.get(WHITENING_PARAM), meta.params.get(PCA_PARAM)
    stored_dim = whiten if whiten is not None else pca if pca is not None else meta.embedding.dim
    if meta.index_type in BINARY_TYPES:
        faiss_index = read_binary_index(directory, INDEX_FILE, stored_dim)
    else:
        try:
            faiss_index = faiss.read_index(str(directory / INDEX_FILE))
        except RuntimeError as error:
            reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
            raise UsageError(f"{directory / INDEX_FILE}: not a readable faiss index ({reason})") from None
    if len(doc_ids) != faiss_index.ntotal:
        raise UsageError(
            f"{directory}: {DOCID_FILE} has {len(doc_ids)} ids but the index holds {faiss_index.ntotal} vectors"
        )
    if not isinstance(stored_dim, int) or faiss_index.d != stored_dim:
        said = (f"whitened dim {whiten}" if whiten is not None else f"projected dim {pca}" if pca is not None
                else f"dim {meta.embedding.dim}")
        raise UsageError(f"{directory}: {META_FILE} says {said} but the index has dim {faiss_index.d}")
    transform = (load_whitening(directory, meta.embedding.dim, whiten) if whiten is not None else
                 load_whitening(directory, meta.embedding.dim, pca, PCA_FILE, "projected (--pca)")
                 if pca is not None else None)
    if faiss_index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise UsageError(f"{directory}: index does not use inner product (faiss metric {faiss_index.metric_type})")
    check_checksums(directory, meta.embedding.extra)  # last: the checks above name a specific fault first
    apply_search_params(faiss_index, meta.index_type, meta.params)
    store_dtype = meta.params.get(RESCORE_PARAM)
    rescore_vectors = open_rescore_vectors(directory, len(doc_ids), stored_dim, store_dtype) \
        if store_dtype is not None else None
    return DenseIndex(faiss_index=faiss_index, doc_ids=doc_ids, meta=meta, path=directory, transform=transform,
                      rescore_vectors=rescore_vectors)
