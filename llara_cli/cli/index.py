"""`llara index`: build a faiss index from passage embedding shards."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from llara_cli.cli.options import OutDirOpt, OverwriteOpt
from llara_cli.index.faiss_index import (
    DEFAULT_EF_CONSTRUCTION,
    DEFAULT_EF_SEARCH,
    DEFAULT_HNSW_M,
    IndexType,
    build_index,
)


def index(
    embedding_dirs: Annotated[
        list[Path], typer.Argument(help="Embedding directories written by `llara encode` (all shards of one corpus, or a directory of shards; with --partial, some of them).")
    ],
    out: OutDirOpt,
    index_type: Annotated[
        IndexType, typer.Option("--type", "-t", help="flat: exact; flat-fp16 / flat-sq8: exact scan of fp16 / 8-bit codes (1/2, 1/4 the memory); hnsw: graph, fast approximate; ivf-fp16 / ivf-sq8 / ivfpq: inverted lists of fp16 / 8-bit / PQ codes (see docs/benchmarks.md).")
    ] = IndexType.FLAT,
    hnsw_m: Annotated[int, typer.Option("--hnsw-m", min=1, help="HNSW: neighbours per node.")] = DEFAULT_HNSW_M,
    ef_construction: Annotated[
        int, typer.Option("--ef-construction", min=1, help="HNSW: candidate list size while building.")
    ] = DEFAULT_EF_CONSTRUCTION,
    ef_search: Annotated[
        int, typer.Option("--ef-search", min=1, help="HNSW: candidate list size at search (stored; overridable).")
    ] = DEFAULT_EF_SEARCH,
    nlist: Annotated[
        Optional[int], typer.Option("--nlist", min=1, help="IVF kinds: inverted lists; default 4*sqrt(n), clamped to the training sample.")
    ] = None,
    pq_m: Annotated[
        Optional[int], typer.Option("--pq-m", min=1, help="IVF-PQ: sub-quantizers, must divide dim; default the largest divisor <= 64.")
    ] = None,
    nprobe: Annotated[
        Optional[int], typer.Option("--nprobe", min=1, help="IVF kinds: lists visited at search (stored; overridable).")
    ] = None,
    partial: Annotated[
        bool, typer.Option("--partial", help="Index only some embedding shards of the corpus: one shard of a sharded index for `llara search`.")
    ] = False,
    whiten: Annotated[
        Optional[str], typer.Option("--whiten", metavar="DIM|auto", help="Whiten the embeddings (PCA on the corpus's passages to DIM components of unit variance, then L2 norm; queries get the same transform at search). Helps anisotropic embeddings, such as a lightly adapted small model's, and hurts others (docs/results.md). auto: choose whether and to what DIM without labels, by how well the corpus's own pseudo-queries (titles, crops) find their documents (needs --corpus).")
    ] = None,
    corpus: Annotated[
        Optional[Path], typer.Option("--corpus", help="The corpus the embeddings are of (for --whiten auto): its pseudo-queries are encoded with the embeddings' model.")
    ] = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Build a faiss inner-product index (Pyserini layout: [cyan]index[/], [cyan]docid[/], [cyan]meta.json[/]).

    Shards are merged in shard order; they must come from the same model, prompt, pooling and corpus.

    Example: [cyan]llara index runs/emb/shard-0 runs/emb/shard-1 --out runs/index --type hnsw --ef-search 256[/]

    One shard of a sharded index: [cyan]llara index emb/msmarco/shard-003 --partial --out index/msmarco/shard-003[/]

    Whiten only where it helps, chosen without labels: [cyan]llara index runs/emb --corpus data/cranfield --whiten auto --out runs/index[/]
    """
    whiten_dim = _whitening_dim(whiten, embedding_dirs, corpus)
    meta = build_index(
        embedding_dirs, out, index_type,
        hnsw_m=hnsw_m, ef_construction=ef_construction, ef_search=ef_search,
        nlist=nlist, pq_m=pq_m, nprobe=nprobe, overwrite=overwrite, partial=partial, whiten=whiten_dim,
    )
    whitened = f", whitened to {whiten_dim}" if whiten_dim is not None else ""
    typer.echo(f"indexed {meta.embedding.count} vectors of dim {meta.embedding.dim} ({meta.index_type.value}{whitened}) in {out}")


def _whitening_dim(whiten: str | None, embedding_dirs: list[Path], corpus: Path | None) -> int | None:
    """The --whiten value as a dimension: a number, or ``auto`` chosen on the corpus's pseudo-queries."""
    from llara_cli.errors import UsageError

    if whiten is None:
        return None
    if whiten.strip().lower() != "auto":
        try:
            dim = int(whiten)
        except ValueError:
            raise UsageError(f"--whiten {whiten!r}: expected a dimension or auto") from None
        if dim < 1:
            raise UsageError(f"--whiten {dim}: must be at least 1")
        return dim
    if corpus is None:
        raise UsageError("--whiten auto needs --corpus: the corpus the embeddings are of (its pseudo-queries)")
    from llara_cli.index.whitening_choice import choose_index_whitening

    choice = choose_index_whitening(embedding_dirs, corpus)
    typer.echo(f"--whiten auto: {choice.describe()}", err=True)
    return choice.dim


def register(app: typer.Typer) -> None:
    app.command("index")(index)
