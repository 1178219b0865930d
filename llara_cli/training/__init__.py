"""Training on the HF Trainer: LLaRA adaptation (``run_adaptation``) and contrastive finetuning (``run_finetuning``).

The names below are imported on first use (PEP 562), so ``llara_cli.training.run_config`` and the other light
modules load without transformers: the CLI reads its defaults from them and still starts fast.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AdaptConfig": "llara_cli.training.adapt", "AdaptResult": "llara_cli.training.adapt",
    "run_adaptation": "llara_cli.training.adapt",
    "FinetuneConfig": "llara_cli.training.finetune_config", "FinetuneResult": "llara_cli.training.finetune_config",
    "run_finetuning": "llara_cli.training.finetune",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
