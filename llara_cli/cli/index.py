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
from llara_cli.index.rescore_store import RescoreStore


def index(
    embedding_dirs: Annotated[
        list[Path], typer.Argument(help="Embedding directories written by `llara encode` (all shards of one corpus, or a directory of shards; with --partial, some of them).")
    ],
    out: OutDirOpt,
    index_type: Annotated[
        IndexType, typer.Option("--type", "-t", help="Bytes per vector at dim d, and recall: flat: 4d, exact; flat-fp16: 2d, flat-sq8: d, exact scan of fp16 / 8-bit codes; hnsw: 4d + 8M, graph, fast approximate; ivf-fp16 / ivf-sq8 / ivfpq: 2d / d / pq-m bytes (+8), inverted lists; int8: d, quantile-calibrated 8-bit codes; binary: d/8, sign bits searched by Hamming distance; binary-hnsw: d/8 + 8M, a graph over them. int8, binary, binary-hnsw and ivfpq keep a float copy beside the index (--rescore-store) that `llara search` rescores k x --rescore-factor candidates with, in memory only what it reads: binary + rescore (500 candidates for a top 10) kept recall@10 >= 0.99 of exact at 1/32 of the memory on SciFact and on synthetic 1024-d vectors (docs/compact-vectors.md). Pyserini opens every kind but the binary ones.")
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
        Optional[int], typer.Option("--whiten", min=1, metavar="DIM", help="Whiten the embeddings (PCA on the corpus's passages to DIM components of unit variance, then L2 norm; queries get the same transform at search). Helps anisotropic embeddings, such as a lightly adapted small model's (docs/results.md).")
    ] = None,
    rescore_store: Annotated[
        RescoreStore, typer.Option("--rescore-store", help="A float copy of the vectors beside the index (vectors.npy, memory-mapped at search) for rescoring: auto (the compact kinds: the embeddings' precision; others: none), fp32, fp16 (half the disk), none.")
    ] = RescoreStore.AUTO,
    overwrite: OverwriteOpt = False,
) -> None:
    """Build a faiss inner-product index (Pyserini layout: [cyan]index[/], [cyan]docid[/], [cyan]meta.json[/]).

    Shards are merged in shard order; they must come from the same model, prompt, pooling and corpus.

    Example: [cyan]llara index runs/emb/shard-0 runs/emb/shard-1 --out runs/index --type hnsw --ef-search 256[/]

    Binary codes (1/32 of flat's memory), rescored at search: [cyan]llara index emb/scifact --out index/scifact-bin --type binary[/]

    One shard of a sharded index: [cyan]llara index emb/msmarco/shard-003 --partial --out index/msmarco/shard-003[/]
    """
    meta = build_index(
        embedding_dirs, out, index_type,
        hnsw_m=hnsw_m, ef_construction=ef_construction, ef_search=ef_search,
        nlist=nlist, pq_m=pq_m, nprobe=nprobe, overwrite=overwrite, partial=partial, whiten=whiten,
        rescore_store=rescore_store,
    )
    whitened = f", whitened to {whiten}" if whiten is not None else ""
    typer.echo(f"indexed {meta.embedding.count} vectors of dim {meta.embedding.dim} ({meta.index_type.value}{whitened}) in {out}")


def register(app: typer.Typer) -> None:
    app.command("index")(index)
