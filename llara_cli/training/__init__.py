"""Training loops on the HF Trainer: LLaRA adaptation (``run_adaptation``); heavy imports happen inside the runs."""
from __future__ import annotations

from llara_cli.training.adapt import AdaptConfig, AdaptResult, run_adaptation
from llara_cli.training.finetune import FinetuneConfig, FinetuneResult, run_finetuning

__all__ = ["AdaptConfig", "AdaptResult", "run_adaptation", "FinetuneConfig", "FinetuneResult", "run_finetuning"]
