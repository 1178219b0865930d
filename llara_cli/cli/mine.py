"""`llara mine`: hard negatives from a TREC run, written as a finetuning jsonl."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from llara_cli.cli.options import MINING_OPTIONS, OutFileOpt, OverwriteOpt, SeedOpt, run_default, with_options
from llara_cli.errors import UsageError
from llara_cli.storage.outputs import check_output_file, writing_output_file


@with_options(MINING_OPTIONS, "data_settings")
def mine(
    run: Annotated[Path, typer.Option("--run", "-r", help="TREC run over the training queries (dense or BM25).")],
    out: OutFileOpt,
    train: Annotated[str | None, typer.Option("--train", "-t", help="A BEIR directory or collection name (scifact, beir/<name>...): queries, qrels and corpus.")] = None,
    seed: SeedOpt = run_default("seed"),
    overwrite: OverwriteOpt = False,
    data_settings: dict[str, Any] | None = None,  # the MINING_OPTIONS, added by with_options
) -> None:
    """Mine hard negatives from a TREC run into a finetuning jsonl.

    For each judged query, sample [bold]--num-negatives[/] documents of the run ranked SKIP+1..DEPTH that are not judged relevant, and write [cyan]{query_id, query, pos, neg, pos_ids, neg_ids}[/] lines for [bold]llara finetune --train[/]. Deterministic given --seed.

    Examples:

      [cyan]llara mine --train data/scifact --run bm25-train.trec --out scifact-train.jsonl[/]

    Dropping candidates scored within 5% of the positive (likely unjudged positives):

      [cyan]llara mine --train data/scifact --run dense-train.trec --relative-margin 0.05 --out scifact-train.jsonl[/]

      [cyan]llara mine --queries q.tsv --qrels qrels.train.tsv --corpus collection.tsv --run dense.trec --skip 5 --depth 100 --out train.jsonl.gz[/]
    """
    from llara_cli.data.finetune import MiningSettings, collection_files, mine_training_data, write_training_file

    parts = dict(data_settings or {})
    collection = {name: parts.pop(name) for name in ("queries", "qrels", "corpus", "split")}
    check_output_file(out, [run, train, collection["queries"], collection["qrels"], collection["corpus"]], overwrite)
    train_path = Path(train) if train is not None else None
    if train_path is not None and train_path.is_file():
        raise UsageError(f"--train {train_path} is a file: give a BEIR directory or collection name to mine for")
    files = collection_files(train, **collection)
    settings = MiningSettings(seed=seed, **parts)  # skip, depth, num_negatives, min_relevance
    data = mine_training_data(files, run, settings)
    with writing_output_file(out):  # removes the temp file a killed mine of this output left
        write_training_file(out, data.examples)
    stats = data.stats
    dropped = (f", {stats['dropped_by_margin']} candidates within the margin of a positive dropped"
               if "dropped_by_margin" in stats else "")
    typer.echo(f"{stats['queries']} queries, {stats['negatives']} negatives "
               f"({stats['queries_without_negatives']} queries without any{dropped}) -> {out}")


def register(app: typer.Typer) -> None:
    app.command("mine")(mine)
