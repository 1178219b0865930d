"""The FastAPI app of ``llara serve``: Pyserini's REST routes over a :class:`SearchService`, plus ``/health``.

Routes and shapes are those of ``python -m pyserini.server.rest`` (Pyserini 1.6, ``pyserini/server/rest``), so a
client written for it works unchanged:

* ``POST /v1/indexes/{index}/search`` -- body ``{"query": str | {"query_txt": str}, "hits": 10, "qid": ""}``,
  answer ``{"query": {"qid", "query_txt"}, "candidates": [{"docid", "score", "document_txt"}, ...]}`` best
  first; llara adds an optional ``dense_weight`` for a hybrid index;
* ``GET /v1/indexes/{index}/documents/{docid}``, ``GET /v1/indexes/{index}/status``,
  ``GET|POST /v1/indexes/{index}/settings``, ``GET /v1/indexes/?index_type=...``, ``GET /``;
* ``GET /health``: liveness, load and micro-batching counters (never needs the API key).

Errors are one clear message in ``{"detail": ...}``: 400 malformed JSON or an option llara does not take,
401 a missing or wrong API key, 404 an unknown index or document, 413 a body over the limit, 422 a query that
fails validation (empty, too long, ``hits`` out of range), 429 too many requests in flight, 503 shutting
down, 504 past the per-request timeout.
"""
from __future__ import annotations

import logging
import secrets
from typing import Any

from fastapi import Body, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from llara_cli import __version__
from llara_cli.errors import LlaraError, UsageError
from llara_cli.search.service.service import (
    IndexKind,
    Overloaded,
    SearchService,
    SearchTimeout,
    ShuttingDown,
    UnknownDocument,
    UnknownIndex,
)

logger = logging.getLogger(__name__)

API_VERSION = "v1"
SERVER_NAME = "llara API"
API_KEY_HEADER = "x-api-key"
RETRY_AFTER_S = "1"
OPEN_PATHS = ("/health",)
# Pyserini's index types, mapped onto what llara serves (GET /v1/indexes/?index_type=...)
INDEX_TYPES = {"tf": IndexKind.BM25, "faiss": IndexKind.DENSE, "hybrid": IndexKind.HYBRID}


# --- request and response models: Pyserini's (pyserini/server/models.py), plus llara's optional fields ------------


class SearchParams(BaseModel):
    query: str | dict[str, Any]
    hits: int = 10
    qid: str = ""
    ef_search: int | None = None
    encoder: str | None = None
    query_generator: str | None = None
    instruction_config: str | None = None
    dense_weight: float | None = Field(None, description="llara: the dense weight of a hybrid index, in [0, 1]")


class QueryInfo(BaseModel):
    qid: str
    query_txt: str
    query_img_path: str | None = None
    query_modality: str | None = "text"
    fp16: bool | None = False


class Candidate(BaseModel):
    docid: str
    score: float
    document_txt: str
    document_img_path: str | None = None
    encoded_img: str | None = None


class Hits(BaseModel):
    query: QueryInfo
    candidates: list[Candidate]


class IndexStatus(BaseModel):
    downloaded: bool
    size_bytes: str


class IndexSetting(BaseModel):
    ef_search: str | None = Field(None, alias="efSearch")
    encoder: str | None = None
    query_generator: str | None = Field(None, alias="queryGenerator")


# --- errors ------------------------------------------------------------------------------------------------------


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _validation_message(error: RequestValidationError) -> tuple[int, str]:
    problems = error.errors()
    if any(problem.get("type") == "json_invalid" for problem in problems):
        return 400, "malformed JSON in the request body"
    parts = []
    for problem in problems:
        where = ".".join(str(item) for item in problem.get("loc", ()) if item != "body")
        parts.append(f"{where or 'body'}: {problem.get('msg', 'invalid')}")
    return 422, "; ".join(parts)


class _BodyLimit:
    """Pure ASGI middleware: refuse a body over ``limit`` bytes with 413 before it is parsed (declared length
    or, for chunked bodies, as it streams in)."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(send)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _BodyTooLarge
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _BodyTooLarge:
            await self._refuse(send)

    async def _refuse(self, send) -> None:
        response = _error(413, f"the request body is over {self.limit} bytes")
        await send({"type": "http.response.start", "status": 413, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})


class _BodyTooLarge(Exception):
    pass


class _Unsupported(UsageError):
    """A Pyserini request option llara does not take per request: 400."""


# --- the app -----------------------------------------------------------------------------------------------------


def create_app(service: SearchService, *, close_on_shutdown: bool = True) -> FastAPI:
    """The FastAPI app answering from ``service`` (closed when the app shuts down, unless told not to)."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        service.begin_shutdown()
        if close_on_shutdown:
            service.close()

    app = FastAPI(title=SERVER_NAME, version=API_VERSION, lifespan=lifespan,
                  description=f"llara {__version__}: dense, BM25 and hybrid search, Pyserini-compatible routes")
    app.state.service = service
    app.add_middleware(_BodyLimit, limit=service.config.max_body_bytes)
    api_key = service.config.api_key

    if api_key:  # installed only when needed: a middleware costs every request
        @app.middleware("http")
        async def check_api_key(request: Request, call_next):
            if request.url.path not in OPEN_PATHS:
                given = request.headers.get(API_KEY_HEADER) or ""
                bearer = request.headers.get("authorization", "")
                if bearer.lower().startswith("bearer "):
                    given = given or bearer[7:]
                if not secrets.compare_digest(given.encode(), api_key.encode()):
                    return _error(401, f"missing or wrong API key (send it in the {API_KEY_HEADER} header)")
            return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, error: RequestValidationError) -> JSONResponse:
        status, detail = _validation_message(error)
        return _error(status, detail)

    @app.exception_handler(LlaraError)
    async def llara_error(_request: Request, error: LlaraError) -> JSONResponse:
        if isinstance(error, (UnknownIndex, UnknownDocument)):
            return _error(404, str(error))
        if isinstance(error, Overloaded):
            return _error(429, str(error), {"Retry-After": RETRY_AFTER_S})
        if isinstance(error, ShuttingDown):
            return _error(503, str(error), {"Retry-After": RETRY_AFTER_S})
        if isinstance(error, SearchTimeout):
            return _error(504, str(error))
        if isinstance(error, _Unsupported):
            return _error(400, str(error))
        if isinstance(error, UsageError):
            return _error(422, str(error))
        logger.error("search failed: %s", error)
        return _error(500, str(error))

    @app.get("/")
    async def root() -> dict[str, str]:
        return {"name": SERVER_NAME, "version": API_VERSION, "description": f"llara {__version__}",
                "documentation": "/docs"}

    @app.get("/health")
    async def health() -> JSONResponse:
        report = service.health()
        return JSONResponse(report, status_code=503 if service.shutting_down else 200)

    prefix = f"/{API_VERSION}/indexes"

    @app.post(prefix + "/{index}/search", response_model=Hits)
    async def search(index: str = Path(..., description="Index name"), params: SearchParams = Body(...)) -> Hits:
        text = _query_text(params.query)
        _refuse_unsupported(params)
        service.index(index)  # 404 before admission
        service.admit()
        try:
            hits = await service.search(index, text, params.hits, params.dense_weight)
        finally:
            service.release()
        return Hits(query=QueryInfo(qid=params.qid, query_txt=text),
                    candidates=[Candidate(docid=doc_id, score=score, document_txt=service.document_text(doc_id))
                                for doc_id, score in hits])

    @app.get(prefix + "/{index}/documents/{docid}", response_model=dict[str, str])
    async def document(docid: str = Path(...), index: str = Path(...)) -> dict[str, str]:
        return service.document(index, docid)

    @app.get(prefix + "/{index}/status", response_model=IndexStatus)
    async def status(index: str = Path(...)) -> dict[str, Any]:
        return service.status(index)

    @app.get(prefix + "/", response_model=list[str])
    async def list_indexes(index_type: str | None = Query(None, description=f"one of {sorted(INDEX_TYPES)}")) -> list[str]:
        if index_type is None:
            return sorted(service.indexes)
        if index_type not in INDEX_TYPES:
            raise UsageError(f"index_type must be one of {sorted(INDEX_TYPES)}, got {index_type!r}")
        return sorted(name for name, served in service.indexes.items() if served.kind is INDEX_TYPES[index_type])

    @app.get(prefix + "/{index}/settings", response_model=IndexSetting)
    async def get_settings(index: str = Path(...)) -> dict[str, Any]:
        return service.index(index).settings()

    @app.post(prefix + "/{index}/settings", response_model=dict[str, str])
    async def update_settings(index: str = Path(...)) -> JSONResponse:
        service.index(index)
        return _error(400, "llara serve fixes its settings at start (ef_search at `llara index --ef-search`, "
                           "the encoder with the index); restart it to change them")

    return app


def _query_text(query: str | dict[str, Any]) -> str:
    if isinstance(query, dict):
        text = query.get("query_txt")
        if not isinstance(text, str):
            raise UsageError("a query object needs a 'query_txt' string (llara serves text queries)")
        return text
    return query


def _refuse_unsupported(params: SearchParams) -> None:
    for name in ("ef_search", "encoder", "query_generator", "instruction_config"):
        if getattr(params, name) is not None:
            raise _Unsupported(f"{name} is not taken per request by llara serve: queries are encoded with the "
                               "index's own model, BM25 uses the bag-of-words query and search parameters are "
                               "fixed when the index is built")
