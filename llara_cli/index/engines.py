"""External engines for collections that outgrow one machine: ``llara index --engine milvus`` exports the
passage vectors and ids into Milvus (embedded ``milvus-lite`` on a laptop, a sharded and replicated cluster by
URI, the same client), ``--engine parquet`` writes a plain interchange file any engine can ingest.

An engine index directory holds ``engine.json`` (which engine, where: a URI and a collection, the engine's
index kind) and ``meta.json`` (the embedding meta of the corpus, as a faiss index records it); an embedded
Milvus keeps its data file beside them. :class:`~llara_cli.search.dense.DenseSearcher` opens such a directory
like a faiss index, so ``llara search --index DIR`` and ``llara serve --dense NAME=DIR`` search the engine with
the same queries, model and TREC semantics.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

from llara_cli.encode.embedding_store import (
    META_FILE,
    EmbeddingMeta,
    Side,
    check_compatible,
    load_embedding_meta,
    load_embeddings,
)
from llara_cli.errors import UsageError
from llara_cli.storage.files import read_json

logger = logging.getLogger(__name__)

ENGINE_FILE = "engine.json"


class Engine(str, Enum):
    MILVUS = "milvus"  # searchable: embedded milvus-lite or a Milvus cluster
    PARQUET = "parquet"  # export only: id, vector and the metadata llara records


SEARCHABLE_ENGINES = (Engine.MILVUS,)


@dataclass(frozen=True)
class EngineIndexMeta:
    """What an engine index directory records: the embedding meta of the corpus and where its vectors went."""

    embedding: EmbeddingMeta
    engine: Engine
    params: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def to_dict(self) -> dict[str, Any]:
        return {"engine": self.engine.value, **dict(self.params)}


class EngineIndex(Protocol):
    """An opened engine index: searched with query vectors like a faiss index."""

    meta: EngineIndexMeta

    def search(self, query_vectors: Any, query_ids: Sequence[str], k: int) -> dict[str, list[tuple[str, float]]]:
        ...


def is_engine_dir(path: str | Path) -> bool:
    return (Path(path) / ENGINE_FILE).is_file()


def load_engine_meta(directory: str | Path) -> EngineIndexMeta:
    """Read ``engine.json`` and ``meta.json`` of an engine index directory (UsageError naming the file if bad)."""
    directory = Path(directory)
    engine_path, meta_path = directory / ENGINE_FILE, directory / META_FILE
    payload = read_json(engine_path)
    if not isinstance(payload, dict) or "engine" not in payload:
        raise UsageError(f"{engine_path}: expected a JSON object with an 'engine' field")
    try:
        engine = Engine(payload["engine"])
    except ValueError:
        raise UsageError(f"{engine_path}: unknown engine {payload['engine']!r}") from None
    if not meta_path.is_file():
        raise UsageError(f"{directory}: no {META_FILE} (an interrupted `llara index --engine` run?)")
    embedding = EmbeddingMeta.from_dict(read_json(meta_path), source=meta_path)
    params = {key: value for key, value in payload.items() if key != "engine"}
    return EngineIndexMeta(embedding=embedding, engine=engine, params=params)


def open_engine_index(directory: str | Path) -> EngineIndex:
    """Open an engine index directory for search (:class:`~llara_cli.index.milvus_engine.MilvusIndex`)."""
    meta = load_engine_meta(directory)
    if meta.engine is Engine.MILVUS:
        from llara_cli.index.milvus_engine import MilvusIndex

        return MilvusIndex.open(directory, meta)
    raise UsageError(f"{directory}: a {meta.engine.value} export is for other engines to ingest; llara searches "
                     f"{', '.join(engine.value for engine in SEARCHABLE_ENGINES)} indexes and faiss indexes")


def check_engine_dirs(paths: Sequence[str | Path], engine: Engine | str) -> None:
    """``llara search --engine``: refuse index directories that are not that engine's."""
    try:
        engine = Engine(engine)
    except ValueError:
        raise UsageError(f"unknown engine {engine!r}; choose one of {', '.join(e.value for e in Engine)}") from None
    for path in paths:
        if not is_engine_dir(path) or load_engine_meta(path).engine is not engine:
            raise UsageError(f"{path} is not a {engine.value} index (build one with `llara index --engine "
                             f"{engine.value}`)")
    if len(paths) != 1:
        raise UsageError("an engine index is one directory: the engine shards it itself")


def merged_meta(first: EmbeddingMeta, count: int) -> EmbeddingMeta:
    """The embedding meta of a whole corpus merged from its shards (as ``llara index`` records it)."""
    from llara_cli import __version__

    return dataclasses.replace(first, count=count, shard_id=0, shard_num=1, llara_version=__version__)


def load_passage_shards(directories: Sequence[Path], max_id_bytes: int | None = None) -> tuple[list, int]:
    """The passage embedding shards in shard order (memory maps), checked as ``llara index`` checks them:
    same model, prompt, corpus, every shard once, unique doc ids; and the total row count."""
    metas = {directory: load_embedding_meta(directory) for directory in directories}
    check_compatible(metas, require_all_shards=True)
    first = metas[directories[0]]
    if first.side != Side.PASSAGE.value:
        raise UsageError(f"{directories[0]}: holds {first.side} embeddings; an index needs passage embeddings")
    shards = [load_embeddings(directory, mmap=True) for directory in sorted(directories, key=lambda d: metas[d].shard_id)]
    seen: set[str] = set()
    for shard in shards:
        for doc_id in shard.ids:
            if doc_id in seen:
                raise UsageError(f"document {doc_id} appears twice in {shard.path}'s corpus shards")
            if max_id_bytes is not None and len(doc_id.encode("utf-8")) > max_id_bytes:
                raise UsageError(f"{shard.path}: doc id {doc_id[:40]!r}... is over {max_id_bytes} bytes (the engine's key)")
            seen.add(doc_id)
    if not seen:
        raise UsageError(f"no vectors in {', '.join(str(directory) for directory in directories)}")
    return shards, len(seen)
