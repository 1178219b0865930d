"""``SearchService``: the named searchers ``llara serve`` answers from, with admission control and timeouts.

Dense indexes answer through a :class:`~llara_cli.search.service.batcher.QueryBatcher` (one per index; one
model per model name, loaded once and shared); BM25 answers on a small thread pool over an index kept open;
a hybrid awaits both and fuses them as ``llara search --fuse`` does (:mod:`llara_cli.search.hybrid`).
At most ``max_pending`` requests are admitted at once (queued or running): the next one is refused
(:class:`Overloaded`, HTTP 429) instead of growing a queue without limit; after :meth:`begin_shutdown`
new requests are refused (:class:`ShuttingDown`, 503) while admitted ones finish. The web layer is
:mod:`llara_cli.search.service.app`; this module knows nothing of HTTP.
"""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from llara_cli.errors import LlaraError, UsageError
from llara_cli.search.hybrid import fuse_hybrid
from llara_cli.search.service.batcher import QueryBatcher
from llara_cli.search.service.config import HybridSpec, ServeConfig

logger = logging.getLogger(__name__)

Hits = list[tuple[str, float]]


class IndexKind(str, Enum):
    DENSE = "dense"
    BM25 = "bm25"
    HYBRID = "hybrid"


class Overloaded(LlaraError):
    """More requests than ``max_pending`` are in flight."""


class ShuttingDown(LlaraError):
    """The service is draining: admitted requests finish, new ones are refused."""


class UnknownIndex(UsageError):
    pass


class UnknownDocument(UsageError):
    pass


class SearchTimeout(LlaraError):
    pass


@dataclass
class ServedIndex:
    name: str
    kind: IndexKind
    searcher: Any = None  # DenseSearcher or Bm25Searcher (a hybrid has none of its own)
    batcher: QueryBatcher | None = None
    hybrid: HybridSpec | None = None
    paths: tuple[Path, ...] = ()

    def settings(self) -> dict[str, Any]:
        """What Pyserini's ``/settings`` reports (its model wants strings: "" where a setting does not apply)."""
        if self.kind is IndexKind.DENSE:
            params = getattr(self.searcher.meta, "params", {}) or {}
            ef_search = params.get("ef_search", (params.get("search_params") or {}).get("ef"))
            return {"efSearch": "" if ef_search is None else str(ef_search),
                    "encoder": self.searcher.meta.embedding.model, "queryGenerator": ""}
        return {"efSearch": "", "encoder": None, "queryGenerator": "BagOfWords"}


@dataclass
class ServiceStats:
    started: float = field(default_factory=time.time)
    admitted: int = 0
    completed: int = 0
    overloaded: int = 0
    timed_out: int = 0
    failed: int = 0


def _disk_bytes(paths: tuple[Path, ...]) -> int:
    total = 0
    for path in paths:
        files = [path] if path.is_file() else path.rglob("*")
        total += sum(item.stat().st_size for item in files if item.is_file())
    return total


class SearchService:
    """Load every served index once, then answer ``await service.search(name, text, hits)``."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.indexes: dict[str, ServedIndex] = {}
        self.stats = ServiceStats()
        self.in_flight = 0
        self.shutting_down = False
        self.documents: dict[str, str] = {}
        self._bm25_pool: ThreadPoolExecutor | None = None
        self._closed = False
        try:
            self._load()
        except BaseException:
            self.close()
            raise

    # ---------------------------------------------------------------------------------------------- loading

    def _load(self) -> None:
        from llara_cli.runtime.threads import configure_threads
        from llara_cli.search.bm25 import Bm25Searcher

        config = self.config
        for name, corpus in config.bm25.items():  # BM25 first: the JVM starts before the model loads
            self.indexes[name] = ServedIndex(name, IndexKind.BM25, searcher=Bm25Searcher(corpus),
                                             paths=(Path(corpus),))
            self.indexes[name].searcher.search("warm up", 1)
        if config.bm25:
            threads = config.bm25_threads or configure_threads().threads
            self._bm25_pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="llara-serve-bm25")
        encoders: dict[tuple, Any] = {}
        for name, paths in config.dense.items():
            searcher = self._dense_searcher(paths, encoders)
            batcher = QueryBatcher(searcher, max_batch=config.max_batch, wait_s=config.batch_wait_ms / 1000,
                                   name=name)
            self.indexes[name] = ServedIndex(name, IndexKind.DENSE, searcher=searcher, batcher=batcher,
                                             paths=tuple(paths))
        for name, spec in config.hybrid.items():
            self.indexes[name] = ServedIndex(name, IndexKind.HYBRID, hybrid=spec)
        documents = config.documents or next(iter(config.bm25.values()), None)
        if documents is not None:
            from llara_cli.data.corpus import iter_documents

            self.documents = {document.doc_id: document.text for document in iter_documents(documents)}

    def _dense_searcher(self, paths: tuple[Path, ...], encoders: dict) -> Any:
        """A DenseSearcher; indexes of the same model and family share one loaded encoder."""
        from llara_cli.search.dense import DenseSearcher

        config = self.config
        meta = _index_meta(paths)  # only the meta: which encoder the index needs
        key = (config.model or meta.embedding.model, meta.embedding.prompt_family)
        encoder = encoders.get(key)
        searcher = DenseSearcher(list(paths), model=config.model, dtype=config.dtype, max_length=config.max_length,
                                 trust_remote_code=config.trust_remote_code, encoder=encoder)
        encoders.setdefault(key, searcher.encoder)
        return searcher

    # ---------------------------------------------------------------------------------------------- queries

    def index(self, name: str) -> ServedIndex:
        try:
            return self.indexes[name]
        except KeyError:
            raise UnknownIndex(f"no index named {name!r}; this server has: {', '.join(sorted(self.indexes))}") from None

    def check_query(self, text: str, hits: int) -> None:
        if not text.strip():
            raise UsageError("the query is empty")
        if len(text) > self.config.max_query_chars:
            raise UsageError(f"the query is {len(text)} characters; this server takes at most "
                             f"{self.config.max_query_chars}")
        if not 1 <= hits <= self.config.max_hits:
            raise UsageError(f"hits must be between 1 and {self.config.max_hits}, got {hits}")

    def admit(self) -> None:
        """Count one request in, or refuse it (:class:`ShuttingDown`, :class:`Overloaded`)."""
        if self.shutting_down:
            raise ShuttingDown("the server is shutting down")
        if self.in_flight >= self.config.max_pending:
            self.stats.overloaded += 1
            raise Overloaded(f"{self.in_flight} requests in flight (the limit is {self.config.max_pending}); "
                             "retry shortly")
        self.in_flight += 1
        self.stats.admitted += 1

    def release(self) -> None:
        self.in_flight -= 1

    async def search(self, name: str, text: str, hits: int, dense_weight: float | None = None) -> Hits:
        """The top ``hits`` of one query on a served index, within the per-request timeout (caller admits)."""
        served = self.index(name)
        self.check_query(text, hits)
        try:
            result = await asyncio.wait_for(self._search(served, text, hits, dense_weight), self.config.timeout_s)
        except asyncio.TimeoutError:
            self.stats.timed_out += 1
            raise SearchTimeout(f"the search took longer than {self.config.timeout_s:g} s") from None
        except BaseException:
            self.stats.failed += 1
            raise
        self.stats.completed += 1
        return result

    async def _search(self, served: ServedIndex, text: str, hits: int, dense_weight: float | None) -> Hits:
        if served.kind is IndexKind.DENSE:
            return await self._dense(served, text, hits)
        if served.kind is IndexKind.BM25:
            return await self._bm25(served, text, hits)
        spec = served.hybrid
        weight = spec.dense_weight if dense_weight is None else dense_weight
        if not 0.0 <= weight <= 1.0:
            raise UsageError(f"dense_weight must lie in [0, 1], got {weight}")
        bm25, dense = await asyncio.gather(self._bm25(self.indexes[spec.bm25], text, spec.depth),
                                           self._dense(self.indexes[spec.dense], text, spec.depth))
        return fuse_hybrid({"q": bm25}, {"q": dense}, weight, spec.depth).get("q", [])[:hits]

    async def _dense(self, served: ServedIndex, text: str, hits: int) -> Hits:
        future = served.batcher.submit(text, hits)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            future.cancel()  # still queued: the batcher skips it
            raise

    async def _bm25(self, served: ServedIndex, text: str, hits: int) -> Hits:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._bm25_pool, _bm25_search_detached, served.searcher, text, hits)

    # ---------------------------------------------------------------------------------------------- documents

    def document(self, name: str, doc_id: str) -> dict[str, str]:
        self.index(name)
        if doc_id not in self.documents:
            where = "in the served corpus" if self.documents else "(no --documents corpus is served)"
            raise UnknownDocument(f"no document {doc_id!r} {where}")
        return {"id": doc_id, "contents": self.documents[doc_id]}

    def document_text(self, doc_id: str) -> str:
        return self.documents.get(doc_id, "")

    def status(self, name: str) -> dict[str, Any]:
        served = self.index(name)
        paths = served.paths
        if served.kind is IndexKind.DENSE:
            paths = tuple(served.searcher.shard_dirs)
        elif served.kind is IndexKind.BM25:
            paths = (Path(served.searcher.index_dir),)
        return {"downloaded": True, "size_bytes": str(_disk_bytes(paths)), "kind": served.kind.value}

    def health(self) -> dict[str, Any]:
        batches = {name: served.batcher.stats.to_dict() for name, served in self.indexes.items()
                   if served.batcher is not None}
        return {"status": "shutting_down" if self.shutting_down else "ok", "in_flight": self.in_flight,
                "max_pending": self.config.max_pending, "indexes": {name: served.kind.value for name, served in
                                                                     sorted(self.indexes.items())},
                "admitted": self.stats.admitted, "completed": self.stats.completed,
                "overloaded": self.stats.overloaded, "timed_out": self.stats.timed_out,
                "failed": self.stats.failed, "micro_batches": batches,
                "uptime_s": round(time.time() - self.stats.started, 1)}

    # ---------------------------------------------------------------------------------------------- shutdown

    def begin_shutdown(self) -> None:
        self.shutting_down = True

    def close(self) -> None:
        """Finish what is queued, then release the batchers, the BM25 pool and the indexes (once)."""
        self.shutting_down = True
        if self._closed:
            return
        self._closed = True
        for served in self.indexes.values():
            if served.batcher is not None:
                served.batcher.close()
        if self._bm25_pool is not None:
            self._bm25_pool.shutdown(wait=True)
        for served in self.indexes.values():
            if served.kind is IndexKind.BM25:
                served.searcher.close()
            engine = getattr(served.searcher, "engine", None)
            if engine is not None:
                engine.close()


def _index_meta(paths: tuple[Path, ...]) -> Any:
    from llara_cli.index.engines import is_engine_dir, load_engine_meta
    from llara_cli.search.sharded import resolve_index_shards

    if len(paths) == 1 and is_engine_dir(paths[0]):
        return load_engine_meta(paths[0])
    return resolve_index_shards([Path(path) for path in paths])[1][0]


def _bm25_search_detached(searcher, text: str, hits: int) -> Hits:
    """One BM25 search on a pool thread, which then leaves the JVM (a thread must not end attached)."""
    try:
        return searcher.search(text, hits)
    finally:
        import jnius

        jnius.detach()
