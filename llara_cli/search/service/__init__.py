"""``llara serve``: a search service over llara's indexes -- dense (faiss, sharded, or an external engine),
BM25 and their fusion under names, with Pyserini's REST routes (:mod:`.app`), micro-batched query encoding
(:mod:`.batcher`), admission control and timeouts (:mod:`.service`) and graceful shutdown (:mod:`.server`).
FastAPI and uvicorn are the ``serve`` extra; nothing here is imported until used."""
from __future__ import annotations

from llara_cli._lazy import lazy_exports

_EXPORTS = {
    "ServeConfig": "llara_cli.search.service.config", "HybridSpec": "llara_cli.search.service.config",
    "QueryBatcher": "llara_cli.search.service.batcher",
    "SearchService": "llara_cli.search.service.service",
    "create_app": "llara_cli.search.service.app",
    "run_server": "llara_cli.search.service.server", "ServerThread": "llara_cli.search.service.server",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
