"""`llara serve`: answer search requests over HTTP (Pyserini's REST routes) from dense, BM25 and hybrid indexes."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from llara_cli.cli.options import DEFAULT_DTYPE, DtypeOpt, ModelMaxLengthOpt, OptionalModelOpt, TrustRemoteCodeOpt
from llara_cli.errors import UsageError
from llara_cli.search.fusion import FUSION_DEPTH
from llara_cli.search.service.config import (
    API_KEY_ENV,
    DEFAULT_BATCH_WAIT_MS,
    DEFAULT_HOST,
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_HITS,
    DEFAULT_MAX_PENDING,
    DEFAULT_MAX_QUERY_CHARS,
    DEFAULT_PORT,
    DEFAULT_TIMEOUT_S,
)

SERVING = "Serving"


def serve(
    dense: Annotated[list[str] | None, typer.Option("--dense", metavar="NAME=DIR", help="A dense index to serve as NAME: a `llara index` directory, a directory of index shards, or a `llara index --engine milvus` directory (repeat the option).")] = None,
    bm25: Annotated[list[str] | None, typer.Option("--bm25", metavar="NAME=CORPUS", help="BM25 over a corpus (jsonl or BEIR directory; its Lucene index is built once or reused) served as NAME (repeat).")] = None,
    hybrid: Annotated[list[str] | None, typer.Option("--hybrid", metavar="NAME=BM25,DENSE[,WEIGHT]", help="BM25-anchored fusion of two served indexes, as `llara search --fuse --method robust`; WEIGHT: the dense weight (default robust, 0.2; or the tuned one from a fused run's provenance).")] = None,
    fusion_depth: Annotated[int, typer.Option("--fusion-depth", min=1, help="Hybrid: documents retrieved from each side and fused.")] = FUSION_DEPTH,
    documents: Annotated[Path | None, typer.Option("--documents", help="Corpus whose texts fill document_txt and /documents (default: the first --bm25 corpus).")] = None,
    host: Annotated[str, typer.Option("--host", help="Address to bind; the default answers this machine only.", rich_help_panel=SERVING)] = DEFAULT_HOST,
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="TCP port (0: any free one).", rich_help_panel=SERVING)] = DEFAULT_PORT,
    max_batch: Annotated[int, typer.Option("--max-batch", min=1, help="Dense: concurrent queries encoded in one forward pass (1: one at a time).", rich_help_panel=SERVING)] = DEFAULT_MAX_BATCH,
    batch_wait_ms: Annotated[float, typer.Option("--batch-wait-ms", min=0, max=1000, help="Dense: how long a query waits for others to share its forward pass.", rich_help_panel=SERVING)] = DEFAULT_BATCH_WAIT_MS,
    max_pending: Annotated[int, typer.Option("--max-pending", min=1, help="Requests admitted at once; more get 429.", rich_help_panel=SERVING)] = DEFAULT_MAX_PENDING,
    timeout: Annotated[float, typer.Option("--timeout", min=0.001, help="Seconds per request, queueing included; past it: 504.", rich_help_panel=SERVING)] = DEFAULT_TIMEOUT_S,
    max_query_chars: Annotated[int, typer.Option("--max-query-chars", min=1, help="Longest query accepted (422 beyond).", rich_help_panel=SERVING)] = DEFAULT_MAX_QUERY_CHARS,
    max_hits: Annotated[int, typer.Option("--max-hits", min=1, help="Largest `hits` accepted (422 beyond).", rich_help_panel=SERVING)] = DEFAULT_MAX_HITS,
    model: OptionalModelOpt = None,
    max_length: ModelMaxLengthOpt = None,
    dtype: DtypeOpt = DEFAULT_DTYPE,
    trust_remote_code: TrustRemoteCodeOpt = False,
) -> None:
    """Serve indexes over HTTP with [bold]Pyserini's REST API[/] ([cyan]POST /v1/indexes/NAME/search[/] with {query, hits, qid}).

    Dense queries arriving together are encoded in one forward pass (--max-batch, --batch-wait-ms). Set
    $LLARA_API_KEY to require it in the x-api-key header. SIGTERM or Ctrl-C finishes the requests in flight, then exits.

    Examples:

      [cyan]llara serve --bm25 scifact=data/scifact[/]

      [cyan]llara serve --dense scifact=index/scifact --bm25 scifact-bm25=data/scifact --hybrid scifact-hybrid=scifact-bm25,scifact[/]

      [cyan]curl -s localhost:8081/v1/indexes/scifact/search -H 'content-type: application/json' -d '{"query": "aspirin platelets", "hits": 5}'[/]
    """
    from llara_cli.runtime.precision import resolve_dtype
    from llara_cli.search.service.config import HybridSpec, ServeConfig, parse_hybrid, parse_named
    from llara_cli.search.service.server import SERVING_PREFIX, run_server
    from llara_cli.search.service.service import SearchService

    named = [*(("dense", *parse_named(value, "--dense")) for value in dense or []),
             *(("bm25", *parse_named(value, "--bm25")) for value in bm25 or []),
             *(("hybrid", parse_hybrid(value, fusion_depth)[0], value) for value in hybrid or [])]
    names = [name for _kind, name, _value in named]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise UsageError(f"index name(s) {', '.join(repeated)} given twice")
    dense_indexes = {name: (Path(value),) for kind, name, value in named if kind == "dense"}
    bm25_indexes = {name: Path(value) for kind, name, value in named if kind == "bm25"}
    hybrids: dict[str, HybridSpec] = dict(parse_hybrid(value, fusion_depth) for value in hybrid or [])
    api_key = os.environ.get(API_KEY_ENV) or None
    config = ServeConfig(dense=dense_indexes, bm25=bm25_indexes,
                         hybrid=hybrids, documents=documents, host=host, port=port, api_key=api_key, model=model,
                         dtype=resolve_dtype(dtype), max_length=max_length, trust_remote_code=trust_remote_code,
                         max_batch=max_batch, batch_wait_ms=batch_wait_ms, max_pending=max_pending, timeout_s=timeout,
                         max_query_chars=max_query_chars, max_hits=max_hits, max_body_bytes=DEFAULT_MAX_BODY_BYTES)
    if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        typer.echo(f"warning: serving on {host} without an API key (set ${API_KEY_ENV} to require one)", err=True)
    service = SearchService(config)  # loads every index and model first: errors surface before a port is bound
    typer.echo(f"loaded {', '.join(f'{name} ({served.kind.value})' for name, served in sorted(service.indexes.items()))}")

    def started(bound_host: str, bound_port: int) -> None:
        typer.echo(f"{SERVING_PREFIX}http://{bound_host}:{bound_port} (POST /v1/indexes/NAME/search; GET /health)")

    run_server(service, on_started=started)
    typer.echo("stopped: every admitted request was answered")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
