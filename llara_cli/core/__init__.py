"""The LLaRA maths, free of model loading and I/O: prompt layouts (EBAE/EBAR, both families), the joint
attention mask, pooling, the bag-of-words and contrastive losses, and collation into padded tensors."""
from __future__ import annotations

from llara_cli._lazy import lazy_exports

_EXPORTS = {
    "PromptFamily": "llara_cli.core.prompts", "PromptFormat": "llara_cli.core.prompts", "Side": "llara_cli.core.prompts",
    "joint_attention_inputs": "llara_cli.core.masks",
    "last_token_pool": "llara_cli.core.pooling", "masked_mean_pool": "llara_cli.core.pooling",
    "bow_loss": "llara_cli.core.losses", "marker_max_bow_loss": "llara_cli.core.losses",
    "contrastive_loss_from_embeddings": "llara_cli.core.contrastive",
    "collate_prompted": "llara_cli.core.batching",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
