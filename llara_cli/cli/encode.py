"""`llara encode`: Encode a corpus or queries into embeddings."""
from __future__ import annotations

import typer

from llara_cli.cli._pending import not_yet_available


def encode() -> None:
    """Encode a corpus or queries into embeddings. (not implemented yet)"""
    not_yet_available("encode", 4)


def register(app: typer.Typer) -> None:
    app.command("encode")(encode)
