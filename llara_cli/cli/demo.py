"""`llara demo-collection`: a judged offline collection (BEIR layout) from the Python stdlib's docstrings."""
from __future__ import annotations

from typing import Annotated

import typer

from llara_cli.cli.options import OutDirOpt, OverwriteOpt, SeedOpt
from llara_cli.data.qrels import DEFAULT_BEIR_SPLIT
from llara_cli.demo.collection import DEFAULT_MAX_DOCUMENTS, DEFAULT_N_QUERIES, DEFAULT_SEED


def demo_collection(
    out: OutDirOpt,
    max_documents: Annotated[int, typer.Option("--max-documents", min=1, help="Corpus size cap (judged documents + distractors).")] = DEFAULT_MAX_DOCUMENTS,
    num_queries: Annotated[int, typer.Option("--num-queries", min=1, help="Queries to write (fewer if the stdlib has too few usable summaries).")] = DEFAULT_N_QUERIES,
    seed: SeedOpt = DEFAULT_SEED,
    split: Annotated[str, typer.Option("--split", help="Qrels split name (qrels/SPLIT.tsv).")] = DEFAULT_BEIR_SPLIT,
    overwrite: OverwriteOpt = False,
) -> None:
    """Build a judged known-item collection offline from the Python standard library's docstrings.

    Each query is the summary sentence of one stdlib docstring, judged relevant to the rest of that docstring; the other docstrings are distractors. Nothing is downloaded or imported (the source is parsed), and the same Python version and options give identical bytes. [bold]--overwrite[/] replaces only an earlier build.

    Example:

      [cyan]llara demo-collection --out data/stdlib --max-documents 3000 --num-queries 300[/]
    """
    from llara_cli.demo.collection import build_stdlib_collection

    stats = build_stdlib_collection(out, max_documents=max_documents, seed=seed, split=split,
                                    n_queries=num_queries, overwrite=overwrite)
    typer.echo(f"{out}: {stats.n_documents} documents, {stats.n_queries} queries (Python {stats.python_version})")


def register(app: typer.Typer) -> None:
    app.command("demo-collection")(demo_collection)
