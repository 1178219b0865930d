"""`llara index`: Build a faiss index from embeddings."""
from __future__ import annotations

import typer

from llara_cli.cli._pending import not_yet_available


def index() -> None:
    """Build a faiss index from embeddings. (not implemented yet)"""
    not_yet_available("index", 4)


def register(app: typer.Typer) -> None:
    app.command("index")(index)
