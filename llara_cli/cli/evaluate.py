"""`llara evaluate`: Evaluate TREC runs against qrels with ir_measures."""
from __future__ import annotations

import typer

from llara_cli.cli._pending import not_yet_available


def evaluate() -> None:
    """Evaluate TREC runs against qrels with ir_measures. (not implemented yet)"""
    not_yet_available("evaluate", 4)


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
