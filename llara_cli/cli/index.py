"""`llara index`: build a faiss index from passage embedding shards."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llara_cli.cli.options import OutDirOpt, OverwriteOpt
from llara_cli.errors import UsageError
from llara_cli.index.engines import Engine
from llara_cli.index.faiss_index import (
    DEFAULT_EF_CONSTRUCTION,
    DEFAULT_EF_SEARCH,
    DEFAULT_HNSW_M,
    IndexType,
    build_index,
)
from llara_cli.index.rescore_store import RescoreStore

DEFAULT_MILVUS_NPROBE = 16


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
        int | None, typer.Option("--nlist", min=1, help="IVF kinds: inverted lists; default 4*sqrt(n), clamped to the training sample.")
    ] = None,
    pq_m: Annotated[
        int | None, typer.Option("--pq-m", min=1, help="IVF-PQ: sub-quantizers, must divide dim; default the largest divisor <= 64.")
    ] = None,
    nprobe: Annotated[
        int | None, typer.Option("--nprobe", min=1, help="IVF kinds: lists visited at search (stored; overridable).")
    ] = None,
    partial: Annotated[
        bool, typer.Option("--partial", help="Index only some embedding shards of the corpus: one shard of a sharded index for `llara search`.")
    ] = False,
    whiten: Annotated[
        str | None, typer.Option("--whiten", metavar="DIM|auto", help="Whiten the embeddings (PCA on the corpus's passages to DIM components of unit variance, then L2 norm; queries get the same transform at search). Helps anisotropic embeddings, such as a lightly adapted small model's, and hurts others (docs/results.md). auto: choose whether and to what DIM without labels, by how well the corpus's own pseudo-queries (titles, crops) find their documents (needs --corpus).")
    ] = None,
    pca: Annotated[
        int | None, typer.Option("--pca", metavar="DIM", min=1, help="Project the embeddings onto the corpus's DIM principal directions (uncentred, unscaled: at the full dim a rotation that changes no score), then L2 norm; queries get the same projection at search. A smaller index that keeps more than a DIM prefix (llara encode --dim) does, also for a Matryoshka model (docs/results.md). Not with --whiten.")
    ] = None,
    corpus: Annotated[
        Path | None, typer.Option("--corpus", help="The corpus the embeddings are of (for --whiten auto): its pseudo-queries are encoded with the embeddings' model.")
    ] = None,
    rescore_store: Annotated[
        RescoreStore, typer.Option("--rescore-store", help="A float copy of the vectors beside the index (vectors.npy, memory-mapped at search) for rescoring: auto (the compact kinds: the embeddings' precision; others: none), fp32, fp16 (half the disk), none.")
    ] = RescoreStore.AUTO,
    engine: Annotated[
        Engine | None, typer.Option("--engine", help="Export to an external engine instead of faiss: milvus (embedded milvus-lite in --out, or a cluster with --engine-uri; --type flat, hnsw or ivf-sq8) or parquet (id, vector and llara's meta, for any engine to ingest). See docs/serve.md.")
    ] = None,
    engine_uri: Annotated[
        str | None, typer.Option("--engine-uri", help="Milvus: a server or cluster, e.g. http://localhost:19530 (token from $LLARA_MILVUS_TOKEN); default: embedded in --out.")
    ] = None,
    collection: Annotated[
        str | None, typer.Option("--collection", help="Milvus: the collection name (default: llara_ + the --out directory's name).")
    ] = None,
    engine_shards: Annotated[
        int | None, typer.Option("--engine-shards", min=1, help="Milvus cluster: shards the collection's writes are split over.")
    ] = None,
    engine_replicas: Annotated[
        int | None, typer.Option("--engine-replicas", min=1, help="Milvus cluster: in-memory replicas loaded on the query nodes (each costs the collection's memory).")
    ] = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Build a faiss inner-product index (Pyserini layout: [cyan]index[/], [cyan]docid[/], [cyan]meta.json[/]).

    Shards are merged in shard order; they must come from the same model, prompt, pooling and corpus.

    Example: [cyan]llara index runs/emb/shard-0 runs/emb/shard-1 --out runs/index --type hnsw --ef-search 256[/]

    Binary codes (1/32 of flat's memory), rescored at search: [cyan]llara index emb/scifact --out index/scifact-bin --type binary[/]

    One shard of a sharded index: [cyan]llara index emb/msmarco/shard-003 --partial --out index/msmarco/shard-003[/]

    Milvus, embedded (searched by `llara search --index` and `llara serve` like a faiss index): [cyan]llara index runs/emb --out runs/index-milvus --engine milvus[/]

    Whiten only where it helps, chosen without labels: [cyan]llara index runs/emb --corpus data/cranfield --whiten auto --out runs/index[/]

    A quarter of the dims, on the corpus's principal directions, as binary codes rescored at search: [cyan]llara index runs/emb --pca 144 --type binary --out runs/index-pca144[/]
    """
    if engine is not None:
        _export(embedding_dirs, out, engine, index_type, engine_uri, collection, hnsw_m, ef_construction, ef_search,
                nlist, nprobe, partial, whiten, pca, overwrite, engine_shards, engine_replicas)
        return
    if engine_uri is not None or collection is not None or engine_shards or engine_replicas:
        raise UsageError("--engine-uri, --collection, --engine-shards and --engine-replicas apply to --engine milvus")
    whiten_dim = _whitening_dim(whiten, embedding_dirs, corpus)
    meta = build_index(
        embedding_dirs, out, index_type,
        hnsw_m=hnsw_m, ef_construction=ef_construction, ef_search=ef_search,
        nlist=nlist, pq_m=pq_m, nprobe=nprobe, overwrite=overwrite, partial=partial, whiten=whiten_dim,
        rescore_store=rescore_store, pca=pca,
    )
    whitened = (f", whitened to {whiten_dim}" if whiten_dim is not None else
                f", projected to {pca}" if pca is not None else "")
    typer.echo(f"indexed {meta.embedding.count} vectors of dim {meta.embedding.dim} ({meta.index_type.value}{whitened}) in {out}")


def _export(embedding_dirs, out, engine, index_type, engine_uri, collection, hnsw_m, ef_construction,
            ef_search, nlist, nprobe, partial, whiten, pca, overwrite, shards, replicas) -> None:
    if partial or whiten is not None or pca is not None:
        raise UsageError("--partial, --whiten and --pca are faiss options; an engine takes the whole corpus as encoded")
    if engine is Engine.PARQUET:
        if index_type is not IndexType.FLAT or engine_uri or collection or shards or replicas:
            raise UsageError("--engine parquet writes vectors only: no --type or Milvus options")
        from llara_cli.index.parquet_export import PARQUET_FILE, export_parquet

        meta = export_parquet(embedding_dirs, out, overwrite=overwrite)
        typer.echo(f"exported {meta.embedding.count} vectors of dim {meta.embedding.dim} to {out / PARQUET_FILE}")
        return
    from llara_cli.index.milvus_engine import MilvusIndexType, build_milvus_index

    try:
        milvus_type = MilvusIndexType(index_type.value)
    except ValueError:
        choices = ", ".join(kind.value for kind in MilvusIndexType)
        raise UsageError(f"--engine milvus builds {choices}, not {index_type.value}") from None
    meta = build_milvus_index(embedding_dirs, out, milvus_type, uri=engine_uri, collection=collection, hnsw_m=hnsw_m,
                              ef_construction=ef_construction, ef_search=ef_search, nlist=nlist,
                              nprobe=nprobe if nprobe is not None else DEFAULT_MILVUS_NPROBE, num_shards=shards,
                              replicas=replicas, overwrite=overwrite)
    where = meta.params["uri"] if not meta.params["embedded"] else f"{out} (embedded)"
    typer.echo(f"exported {meta.embedding.count} vectors of dim {meta.embedding.dim} to Milvus collection "
               f"{meta.params['collection']} ({milvus_type.value}) at {where}")


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
