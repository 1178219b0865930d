"""`llara search`: Search an index (dense), BM25, or fuse runs; writes a TREC run."""
from __future__ import annotations

import typer

from llara_cli.cli._pending import not_yet_available


def search() -> None:
    """Search an index (dense), BM25, or fuse runs; writes a TREC run. (not implemented yet)"""
    not_yet_available("search", 4)


def register(app: typer.Typer) -> None:
    app.command("search")(search)
