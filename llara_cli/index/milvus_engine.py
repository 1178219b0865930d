"""Milvus as llara's engine for what outgrows one machine: the same ``pymilvus`` client talks to an embedded
``milvus-lite`` file (a laptop, the tests) or to a sharded, replicated Milvus cluster (``--engine-uri
http://host:19530``); ``docs/serve.md`` has the cluster recipe and its memory arithmetic.

A collection holds ``doc_id`` (VARCHAR primary key) and ``vector`` (FLOAT_VECTOR, inner product) -- the rows of
``llara encode``'s shards in shard order. A ``flat`` collection is searched exactly, and its hits are rescored
with faiss' per-pair inner product (the kernel llara's flat faiss search rescores with), so the run equals the
faiss flat index's byte for byte; ``hnsw`` and ``ivf-sq8`` are Milvus' approximate indexes (their recall is
measured in ``benchmarks/serve_load.py``). The cluster's token is read from ``$LLARA_MILVUS_TOKEN`` at use
and never written to disk.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llara_cli.encode.embedding_store import META_FILE
from llara_cli.encode.shards import expand_shard_dirs
from llara_cli.errors import LlaraError, UsageError
from llara_cli.index.engines import ENGINE_FILE, Engine, EngineIndexMeta, load_passage_shards, merged_meta
from llara_cli.storage.files import write_json

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)

EMBEDDED_DB_FILE = "milvus.db"  # milvus-lite's data file inside the index directory
TOKEN_ENV = "LLARA_MILVUS_TOKEN"
ID_FIELD, VECTOR_FIELD = "doc_id", "vector"
MAX_ID_LENGTH = 1024  # bytes of a doc id (VARCHAR max_length)
MAX_TOP_K = 16384  # Milvus' limit on hits per query
INSERT_BYTES = 16 << 20  # vector bytes per insert call (Milvus caps one request at 64 MiB)
QUERY_BATCH = 256  # query vectors per search call
COLLECTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
DEFAULT_HNSW_M, DEFAULT_EF_CONSTRUCTION, DEFAULT_EF_SEARCH = 32, 200, 128
DEFAULT_NPROBE = 16


class MilvusIndexType(str, Enum):
    FLAT = "flat"  # exact
    HNSW = "hnsw"
    IVF_SQ8 = "ivf-sq8"  # inverted lists of 8-bit codes (the names are llara index --type's)


_MILVUS_NAMES = {MilvusIndexType.FLAT: "FLAT", MilvusIndexType.HNSW: "HNSW", MilvusIndexType.IVF_SQ8: "IVF_SQ8"}


def is_embedded(uri: str) -> bool:
    """A milvus-lite file rather than a server: anything that is not ``http(s)://`` or ``tcp://``."""
    return not re.match(r"^(https?|tcp|grpc)://", uri)


def default_collection(out_dir: Path) -> str:
    """A valid collection name from the index directory's name (``index/scifact-m`` -> ``llara_scifact_m``)."""
    return "llara_" + re.sub(r"[^A-Za-z0-9_]", "_", out_dir.resolve().name)[:240]


def _client(uri: str) -> Any:
    try:
        from pymilvus import MilvusClient
    except ImportError:
        raise LlaraError("the Milvus engine needs pymilvus (and milvus-lite to embed it): "
                         "pip install 'llara[milvus]'") from None
    if is_embedded(uri):  # milvus-lite answers AllocTimestamp (asked by create_collection) with "not implemented",
        logging.getLogger("grpc._server").setLevel(logging.CRITICAL)  # which gRPC logs as an error: harmless
    try:
        return MilvusClient(uri=uri, token=os.environ.get(TOKEN_ENV, ""))
    except Exception as error:
        raise LlaraError(f"cannot connect to Milvus at {uri}: {error}") from None


def _release_embedded(uri: str) -> None:
    """Stop milvus-lite's in-process server for an embedded file, so it can be moved or opened again."""
    if is_embedded(uri):
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(uri)


def _close(client: Any, uri: str) -> None:
    client.close()
    _release_embedded(uri)


def _index_params(client: Any, index_type: MilvusIndexType, total: int, hnsw_m: int, ef_construction: int,
                  nlist: int | None) -> tuple[Any, dict[str, Any]]:
    params: dict[str, Any] = {}
    if index_type is MilvusIndexType.HNSW:
        params = {"M": hnsw_m, "efConstruction": ef_construction}
    elif index_type is MilvusIndexType.IVF_SQ8:
        params = {"nlist": nlist or max(1, min(65536, int(4 * total ** 0.5)))}
    index_params = client.prepare_index_params()
    index_params.add_index(field_name=VECTOR_FIELD, index_type=_MILVUS_NAMES[index_type], metric_type="IP",
                           params=params)
    return index_params, params


def build_milvus_index(
    embedding_dirs: Sequence[str | Path],
    out_dir: str | Path,
    index_type: MilvusIndexType | str = MilvusIndexType.FLAT,
    *,
    uri: str | None = None,
    collection: str | None = None,
    hnsw_m: int = DEFAULT_HNSW_M,
    ef_construction: int = DEFAULT_EF_CONSTRUCTION,
    ef_search: int = DEFAULT_EF_SEARCH,
    nlist: int | None = None,
    nprobe: int = DEFAULT_NPROBE,
    num_shards: int | None = None,
    replicas: int | None = None,
    overwrite: bool = False,
) -> EngineIndexMeta:
    """Insert the passage vectors and ids of ``llara encode``'s shards into a Milvus collection and write the
    engine index directory ``out_dir`` (``engine.json``, ``meta.json``; the milvus-lite file when embedded).

    ``uri`` None embeds Milvus in ``out_dir/milvus.db``; ``http://host:19530`` uses a server or cluster (the
    collection is created there; ``overwrite`` drops one of the same name). On a cluster, ``num_shards`` splits the
    collection's writes over that many shards and ``replicas`` loads that many in-memory copies of it on the
    query nodes (throughput and availability; each costs the collection's memory again). Returns the recorded meta.
    """
    import numpy as np

    index_type = MilvusIndexType(index_type)
    out_dir = Path(out_dir)
    directories = expand_shard_dirs([Path(directory) for directory in embedding_dirs])
    if not directories:
        raise UsageError("no embedding directories given")
    if out_dir.exists() and not overwrite:
        raise UsageError(f"{out_dir}: already exists (pass --overwrite to replace it)")
    if (num_shards or replicas) and uri is None:
        raise UsageError("shards and replicas apply to a Milvus cluster (--engine-uri), not the embedded file")
    collection = collection or default_collection(out_dir)
    if not COLLECTION_NAME.fullmatch(collection):
        raise UsageError(f"Milvus collection name {collection!r}: letters, digits and _, not starting with a digit")
    shards, total = load_passage_shards(directories, MAX_ID_LENGTH)
    first = shards[0].meta
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    temp_dir = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    embedded = uri is None
    client_uri = str(temp_dir / EMBEDDED_DB_FILE) if embedded else uri
    client = _client(client_uri)
    try:
        from pymilvus import DataType

        if client.has_collection(collection):
            if not overwrite:
                raise UsageError(f"Milvus at {uri} already has a collection {collection!r} (pass --overwrite to "
                                 "replace it, or --collection to name another)")
            client.drop_collection(collection)
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False,
                                      description=f"llara passages of {first.model} ({first.prompt_family})")
        schema.add_field(ID_FIELD, DataType.VARCHAR, is_primary=True, max_length=MAX_ID_LENGTH)
        schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=first.dim)
        index_params, build_params = _index_params(client, index_type, total, hnsw_m, ef_construction, nlist)
        client.create_collection(collection, schema=schema, index_params=index_params,
                                 **({"num_shards": num_shards} if num_shards else {}))
        rows_per_insert = max(1, INSERT_BYTES // (4 * first.dim))
        for shard in shards:
            for start in range(0, len(shard.ids), rows_per_insert):
                block = np.asarray(shard.vectors[start:start + rows_per_insert], dtype=np.float32)  # (rows, dim)
                client.insert(collection, [{ID_FIELD: doc_id, VECTOR_FIELD: vector}
                                           for doc_id, vector in zip(shard.ids[start:start + rows_per_insert], block)])
        client.flush(collection)
        client.load_collection(collection, **({"replica_number": replicas} if replicas else {}))
    except UsageError:
        _close(client, client_uri)
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    except Exception as error:
        _close(client, client_uri)
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise LlaraError(f"Milvus export to {client_uri} failed: {error}") from None
    _close(client, client_uri)
    search_params = {"ef": ef_search} if index_type is MilvusIndexType.HNSW else (
        {"nprobe": nprobe} if index_type is MilvusIndexType.IVF_SQ8 else {})
    params = {"uri": EMBEDDED_DB_FILE if embedded else uri, "embedded": embedded, "collection": collection,
              "index_type": index_type.value, "metric": "IP", "build_params": build_params,
              "search_params": search_params, "count": total, "shards": num_shards, "replicas": replicas}
    meta = EngineIndexMeta(embedding=merged_meta(first, total), engine=Engine.MILVUS, params=params)
    write_json(temp_dir / META_FILE, meta.embedding.to_dict())
    write_json(temp_dir / ENGINE_FILE, meta.to_dict())
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(temp_dir, out_dir)
    logger.info("exported %d vectors of dim %d to Milvus collection %s (%s) at %s", total, first.dim, collection,
                index_type.value, out_dir if embedded else uri)
    return meta


class MilvusIndex:
    """A Milvus collection written by :func:`build_milvus_index`, searched with query vectors."""

    def __init__(self, client: Any, meta: EngineIndexMeta, path: Path | None = None, uri: str = "") -> None:
        self.client, self.meta, self.path, self.uri = client, meta, path, uri
        self.collection = meta.params["collection"]
        self.index_type = MilvusIndexType(meta.params["index_type"])
        self.search_params = dict(meta.params.get("search_params", {}))

    @classmethod
    def open(cls, directory: str | Path, meta: EngineIndexMeta) -> MilvusIndex:
        directory = Path(directory)
        uri = meta.params.get("uri")
        if not isinstance(uri, str) or "collection" not in meta.params or "index_type" not in meta.params:
            raise UsageError(f"{directory / ENGINE_FILE}: needs uri, collection and index_type")
        if meta.params.get("embedded"):
            uri = str(directory / uri)
            if not Path(uri).exists():
                raise UsageError(f"{directory}: the embedded Milvus file {EMBEDDED_DB_FILE} is missing")
        client = _client(uri)
        try:
            if not client.has_collection(meta.params["collection"]):
                raise UsageError(f"Milvus at {uri} has no collection {meta.params['collection']!r}")
            client.load_collection(meta.params["collection"])
        except UsageError:
            _close(client, uri)
            raise
        return cls(client, meta, directory, uri)

    @property
    def dim(self) -> int:
        return self.meta.embedding.dim

    @property
    def ntotal(self) -> int:
        return self.meta.embedding.count

    def search(self, query_vectors: np.ndarray, query_ids: Sequence[str], k: int,
               params: dict[str, Any] | None = None) -> dict[str, list[tuple[str, float]]]:
        """Top-``k`` ``{query_id: [(doc_id, score), ...]}`` by inner product, best first (``k`` above the
        collection size is clamped; ``params`` overrides the stored ``ef``/``nprobe`` for this call)."""
        import numpy as np

        query_vectors = np.ascontiguousarray(query_vectors, dtype=np.float32)  # (n_queries, dim)
        if query_vectors.ndim != 2 or query_vectors.shape[1] != self.dim:
            raise UsageError(f"query vectors have shape {query_vectors.shape}; the Milvus index has dim {self.dim}")
        if len(query_ids) != len(query_vectors):
            raise UsageError(f"{len(query_ids)} query ids for {len(query_vectors)} query vectors")
        if not 1 <= k:
            raise UsageError(f"k must be positive, got {k}")
        k = min(k, self.ntotal)
        if k > MAX_TOP_K:
            raise UsageError(f"Milvus returns at most {MAX_TOP_K} hits per query, asked for {k}")
        exact = self.index_type is MilvusIndexType.FLAT
        search_params = {"metric_type": "IP", "params": {**self.search_params, **(params or {})}}
        results: dict[str, list[tuple[str, float]]] = {}
        for start in range(0, len(query_vectors), QUERY_BATCH):
            batch = query_vectors[start:start + QUERY_BATCH]  # (batch, dim)
            found = self.client.search(self.collection, data=list(batch), limit=k, search_params=search_params,
                                       output_fields=[VECTOR_FIELD] if exact else [ID_FIELD])
            for query_id, query, hits in zip(query_ids[start:start + QUERY_BATCH], batch, found):
                doc_ids = [hit.get("id", hit.get(ID_FIELD)) for hit in hits]
                if exact:
                    vectors = np.asarray([hit["entity"][VECTOR_FIELD] for hit in hits], dtype=np.float32)
                    scores = rescore_exactly(query, vectors)
                else:
                    scores = [float(hit["distance"]) for hit in hits]
                results[query_id] = sorted(zip(doc_ids, scores), key=lambda pair: -pair[1])
        return results

    def close(self) -> None:
        _close(self.client, self.uri)


def rescore_exactly(query: np.ndarray, vectors: np.ndarray) -> list[float]:
    """Inner products of one query ``(dim,)`` with ``vectors`` ``(n, dim)`` by faiss' per-pair SIMD kernel -- the
    one llara's flat faiss search rescores with -- so the scores equal a faiss flat index's to the bit."""
    import faiss
    import numpy as np

    if len(vectors) == 0:
        return []
    queries = np.ascontiguousarray(query[None, :], dtype=np.float32)  # (1, dim)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)  # (n, dim)
    rows = np.arange(len(vectors), dtype=np.int64)[None, :]  # (1, n)
    scores = np.empty(rows.shape, dtype=np.float32)  # (1, n)
    faiss.fvec_inner_products_by_idx(faiss.swig_ptr(scores), faiss.swig_ptr(queries), faiss.swig_ptr(vectors),
                                     faiss.swig_ptr(rows), vectors.shape[1], 1, len(vectors))
    return scores[0].tolist()
