"""`llara finetune`: RepLLaMA-style contrastive finetuning with LoRA and hard negatives."""
from __future__ import annotations

import typer

from llara_cli.cli._pending import not_yet_available


def finetune() -> None:
    """RepLLaMA-style contrastive finetuning with LoRA and hard negatives. (not implemented yet)"""
    not_yet_available("finetune", 6)


def register(app: typer.Typer) -> None:
    app.command("finetune")(finetune)
