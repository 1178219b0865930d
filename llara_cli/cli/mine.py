"""`llara mine`: hard negatives from a TREC run, written as a finetuning jsonl."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from llara_cli.cli.options import (
    CorpusPartOpt, DepthOpt, MinRelevanceOpt, NumNegativesOpt, OutFileOpt, OverwriteOpt, QrelsPartOpt, QueriesPartOpt,
    SeedOpt, SkipOpt, TrainSplitOpt, run_default,
)
from llara_cli.data.finetune import (
    DEFAULT_DEPTH, DEFAULT_MIN_RELEVANCE, DEFAULT_NUM_NEGATIVES, DEFAULT_SKIP, DEFAULT_SPLIT,
)
from llara_cli.errors import UsageError


def mine(
    run: Annotated[Path, typer.Option("--run", "-r", help="TREC run over the training queries (dense or BM25).")],
    out: OutFileOpt,
    train: Annotated[Optional[str], typer.Option("--train", "-t", help="A BEIR directory or collection name (scifact, beir/<name>...): queries, qrels and corpus.")] = None,
    queries: QueriesPartOpt = None,
    qrels: QrelsPartOpt = None,
    corpus: CorpusPartOpt = None,
    split: TrainSplitOpt = DEFAULT_SPLIT,
    skip: SkipOpt = DEFAULT_SKIP,
    depth: DepthOpt = DEFAULT_DEPTH,
    num_negatives: NumNegativesOpt = DEFAULT_NUM_NEGATIVES,
    min_relevance: MinRelevanceOpt = DEFAULT_MIN_RELEVANCE,
    seed: SeedOpt = run_default("seed"),
    overwrite: OverwriteOpt = False,
) -> None:
    """Mine hard negatives from a TREC run into a finetuning jsonl.

    For each judged query, sample [bold]--num-negatives[/] documents of the run ranked SKIP+1..DEPTH that are not judged relevant, and write [cyan]{query_id, query, pos, neg, pos_ids, neg_ids}[/] lines for [bold]llara finetune --train[/]. Deterministic given --seed.

    Examples:

      [cyan]llara mine --train data/scifact --run bm25-train.trec --out scifact-train.jsonl[/]

      [cyan]llara mine --queries q.tsv --qrels qrels.train.tsv --corpus collection.tsv --run dense.trec --skip 5 --depth 100 --out train.jsonl.gz[/]
    """
    from llara_cli.data.finetune import MiningSettings, collection_files, mine_training_data, write_training_file

    if out.exists() and not overwrite:
        raise UsageError(f"{out} already exists; pass --overwrite to replace it")
    train_path = Path(train) if train is not None else None
    if train_path is not None and train_path.is_file():
        raise UsageError(f"--train {train_path} is a file: give a BEIR directory or collection name to mine for")
    settings = MiningSettings(skip=skip, depth=depth, num_negatives=num_negatives, seed=seed,
                              min_relevance=min_relevance)
    files = collection_files(train, queries=queries, qrels=qrels, corpus=corpus, split=split)
    data = mine_training_data(files, run, settings)
    write_training_file(out, data.examples)
    stats = data.stats
    typer.echo(f"{stats['queries']} queries, {stats['negatives']} negatives "
               f"({stats['queries_without_negatives']} queries without any) -> {out}")


def register(app: typer.Typer) -> None:
    app.command("mine")(mine)
