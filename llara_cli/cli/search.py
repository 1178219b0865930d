"""`llara search`: dense search over a faiss index, BM25 through Anserini, or fusion of runs."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llara_cli.cli.options import (
    DEFAULT_DTYPE,
    DimOpt,
    DtypeOpt,
    ModelMaxLengthOpt,
    OptionalModelOpt,
    OutFileOpt,
    OverwriteOpt,
    PromptFamilyOpt,
    QueriesOpt,
    QueryPromptOverrideOpt,
    TrustRemoteCodeOpt,
    at_most,
    finite,
)
from llara_cli.errors import UsageError
from llara_cli.index.engines import Engine
from llara_cli.search.bm25 import DEFAULT_B, DEFAULT_K1, MAX_K
from llara_cli.search.dense import DEFAULT_K, DEFAULT_QUERY_BATCH_SIZE
from llara_cli.search.fusion import RRF_K as DEFAULT_RRF_K
from llara_cli.search.run_fusion import DEFAULT_FUSION_METHOD, FusionMethod
from llara_cli.storage.outputs import check_output_file, writing_output_file


def search(
    out: OutFileOpt,
    queries: QueriesOpt = None,
    index: Annotated[list[Path] | None, typer.Option("--index", "-i", help="Dense: an index built by `llara index`; repeat it for index shards (or give a directory of shards), searched one at a time and merged exactly.")] = None,
    engine: Annotated[Engine | None, typer.Option("--engine", help="Dense: the --index is an external engine's (`llara index --engine milvus`); detected from the directory, this makes sure of it.")] = None,
    bm25: Annotated[bool, typer.Option("--bm25", help="BM25 (Lucene, through Anserini) over --corpus.")] = False,
    corpus: Annotated[Path | None, typer.Option("--corpus", help="BM25: the corpus (jsonl or BEIR directory).")] = None,
    bm25_index: Annotated[Path | None, typer.Option("--bm25-index", help="BM25: where the Lucene index lives (default: cached beside the corpus or in $LLARA_HOME).")] = None,
    k1: Annotated[float, typer.Option("--k1", min=0, callback=finite, help="BM25 k1.")] = DEFAULT_K1,
    b: Annotated[float, typer.Option("--b", min=0, max=1, help="BM25 b.")] = DEFAULT_B,
    fuse: Annotated[list[Path] | None, typer.Option("--fuse", help="Fusion: a run to fuse (repeat the option).")] = None,
    method: Annotated[FusionMethod, typer.Option("--method", help="Fusion: robust (BM25-anchored, small fixed dense weight; the first --fuse run is the anchor), tuned (that weight chosen on --tune-run/--tune-qrels), rrf, or weighted (--weights).")] = DEFAULT_FUSION_METHOD,
    rrf_k: Annotated[int, typer.Option("--rrf-k", min=1, help="RRF constant k.")] = DEFAULT_RRF_K,
    weights: Annotated[str | None, typer.Option("--weights", help="Weighted fusion: comma-separated weights, one per run.")] = None,
    tune_run: Annotated[list[Path] | None, typer.Option("--tune-run", help="Tuned fusion: each --fuse system's run on the tuning queries (repeat, same order).")] = None,
    tune_qrels: Annotated[Path | None, typer.Option("--tune-qrels", help="Tuned fusion: qrels of the tuning queries (a file or BEIR directory).")] = None,
    tune_split: Annotated[str, typer.Option("--tune-split", help="Tuned fusion: the qrels split of a BEIR --tune-qrels directory.")] = "train",
    split: Annotated[str | None, typer.Option("--split", help="With a BEIR directory as --queries: search only the queries judged in qrels/<split>.tsv.")] = "test",
    k: Annotated[int, typer.Option("--k", "-k", min=1, callback=at_most(MAX_K), help="Results per query.")] = DEFAULT_K,
    model: OptionalModelOpt = None,
    prompt_family: PromptFamilyOpt = None,
    query_prompt: QueryPromptOverrideOpt = None,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Queries per forward pass.")] = DEFAULT_QUERY_BATCH_SIZE,
    max_length: ModelMaxLengthOpt = None,
    dtype: DtypeOpt = DEFAULT_DTYPE,
    trust_remote_code: TrustRemoteCodeOpt = False,
    dim: DimOpt = None,
    rescore_factor: Annotated[int | None, typer.Option("--rescore-factor", min=1, help="Dense, compact indexes (int8, binary, ivfpq): fetch k x FACTOR candidates and rescore them with the float vectors stored beside the index; default 4 (int8, ivfpq) or 10 (binary) when the index has them; 1: no rescoring.")] = None,
    overwrite: OverwriteOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was written as one JSON document on stdout (schema: docs/evaluation.md); progress and messages go to stderr.")] = False,
) -> None:
    """Search and write a TREC run: [bold]dense[/] (--index), [bold]BM25[/] (--bm25) or [bold]fusion[/] (--fuse).

    Examples:

      [cyan]llara search --index index/scifact --queries data/scifact --out dense.trec[/]

      [cyan]llara search --index index/scifact-bin --queries data/scifact --rescore-factor 20 --out dense.trec[/]

      [cyan]llara search --index index/msmarco-shards --queries data/msmarco --split dev --out dense.trec[/]

      [cyan]llara search --bm25 --corpus data/scifact --queries data/scifact --out bm25.trec[/]

      [cyan]llara search --fuse bm25.trec --fuse dense.trec --out fused.trec[/]

      [cyan]llara search --fuse bm25.trec --fuse dense.trec --method rrf --out rrf.trec --overwrite --json[/]

      [cyan]llara search --fuse bm25.trec --fuse dense.trec --method tuned --tune-run bm25-train.trec --tune-run dense-train.trec --tune-qrels data/scifact --out fused.trec[/]
    """
    modes = [name for name, chosen in (("--index", bool(index)), ("--bm25", bm25), ("--fuse", bool(fuse))) if chosen]
    if len(modes) != 1:
        raise UsageError("choose exactly one of --index (dense), --bm25 or --fuse" +
                         (f" (got {', '.join(modes)})" if modes else ""))
    from llara_cli.encode.shards import expand_shard_dirs

    check_output_file(out, [*(fuse or []), *(tune_run or []), tune_qrels, queries, corpus,
                            *expand_shard_dirs(index or [])], overwrite)
    import contextlib
    import sys

    # with --json, stdout carries the JSON document only: the usual messages go to stderr
    with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
        if fuse:
            from llara_cli.search.run_fusion import provenance_path

            check_output_file(provenance_path(out), [*fuse, *(tune_run or []), tune_qrels], overwrite)
            with writing_output_file(out):
                _fuse(fuse, method, out, rrf_k, weights, k, tune_run, tune_qrels, tune_split)
        elif queries is None:
            raise UsageError("--queries is required for dense and BM25 search")
        else:
            with writing_output_file(out):
                if bm25:
                    _bm25(corpus, queries, out, bm25_index, k, k1, b, split)
                else:
                    if engine is not None:
                        from llara_cli.index.engines import check_engine_dirs

                        check_engine_dirs(index, engine)
                    _dense(index, queries, out, split, model, prompt_family, k, batch_size, max_length, dtype,
                           trust_remote_code, dim, rescore_factor, query_prompt)
    if as_json:
        import json

        from llara_cli.search.run_report import describe_written_run

        mode = "fuse" if fuse else "bm25" if bm25 else "dense"
        inputs = {"fuse": [str(path) for path in fuse or []], "index": [str(path) for path in index or []],
                  "corpus": str(corpus) if bm25 and corpus else None, "queries": str(queries) if queries else None}
        typer.echo(json.dumps(describe_written_run(out, mode=mode, k=k, inputs=inputs), indent=2))


def _dense(index, queries, out, split, model, prompt_family, k, batch_size, max_length, dtype,
           trust_remote_code, dim=None, rescore_factor=None, query_prompt=None) -> None:
    from llara_cli.cli.progress import item_progress
    from llara_cli.search.dense import DenseSearchJob, run_dense_search

    job = DenseSearchJob(index_dir=index, queries=queries, out_run=out, split=split, model=model,
                         prompt_family=prompt_family, k=k, batch_size=batch_size, max_length=max_length, dtype=dtype,
                         trust_remote_code=trust_remote_code, dim=dim, rescore_factor=rescore_factor,
                         query_prompt=query_prompt)
    with item_progress("encoding queries", "queries") as (on_start, on_advance):
        summary = run_dense_search(job, on_start=on_start, on_progress=on_advance)  # resolves --dtype auto
    typer.echo(f"searched {summary.queries} queries (top {k}, {summary.dtype}) -> {out}")


def _bm25(corpus, queries, out, bm25_index, k, k1, b, split) -> None:
    from llara_cli.search.bm25 import run_bm25

    if corpus is None:
        raise UsageError("--bm25 needs --corpus")
    _, count = run_bm25(corpus, queries, out, index_dir=bm25_index, k=k, k1=k1, b=b, split=split)
    typer.echo(f"searched {count} queries with BM25 (k1={k1}, b={b}) -> {out}")


def _fuse(runs, method, out, rrf_k, weights, k, tune_runs, tune_qrels, tune_split) -> None:
    from llara_cli.data.qrels import read_qrels
    from llara_cli.search.run_fusion import fuse_run_files, provenance_path

    parsed_weights = None
    if weights:
        try:
            parsed_weights = [float(weight) for weight in weights.split(",")]
        except ValueError:
            raise UsageError(f"--weights must be comma-separated numbers, got {weights!r}") from None
    qrels = read_qrels(tune_qrels, tune_split) if tune_qrels is not None else None
    fuse_run_files(runs, method, out, k=rrf_k, weights=parsed_weights, depth=k, tune_runs=tune_runs, tune_qrels=qrels)
    typer.echo(f"fused {len(runs)} runs with {method.value} -> {out} (provenance: {provenance_path(out)})")


def register(app: typer.Typer) -> None:
    app.command("search")(search)
