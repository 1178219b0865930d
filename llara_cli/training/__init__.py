"""Training on the HF Trainer: LLaRA adaptation (``run_adaptation``) and contrastive finetuning (``run_finetuning``),
with both objectives (the adaptation objective and its presets, the contrastive objective).

Names are imported on first use, so ``llara_cli.training.run_config`` and the other light modules load without
transformers: the CLI reads its defaults from them and still starts fast."""
from __future__ import annotations

from llara_cli._lazy import lazy_exports

_EXPORTS = {
    "AdaptConfig": "llara_cli.training.adapt", "AdaptResult": "llara_cli.training.adapt",
    "run_adaptation": "llara_cli.training.adapt",
    "FinetuneConfig": "llara_cli.training.finetune_config", "FinetuneResult": "llara_cli.training.finetune_config",
    "run_finetuning": "llara_cli.training.finetune",
    "ObjectivePreset": "llara_cli.training.objective_presets",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
