"""`llara adapt`: LLaRA post-hoc adaptation (EBAE + EBAR) on unlabeled text."""
from __future__ import annotations

import typer

from llara_cli.cli._pending import not_yet_available


def adapt() -> None:
    """LLaRA post-hoc adaptation (EBAE + EBAR) on unlabeled text. (not implemented yet)"""
    not_yet_available("adapt", 5)


def register(app: typer.Typer) -> None:
    app.command("adapt")(adapt)
