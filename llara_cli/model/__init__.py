"""Models on disk and in memory: resolving a name (alias, directory, offline hub cache, the embedded GGUF),
loading and saving a :class:`LlaraModel` with its ``llara_config.json``, LoRA adapters, the embedding pass."""
from __future__ import annotations

from llara_cli._lazy import lazy_exports

_EXPORTS = {
    "LlaraModel": "llara_cli.model.llara_model", "ModelSource": "llara_cli.model.llara_model",
    "LlaraConfig": "llara_cli.model.config", "Pooling": "llara_cli.model.config",
    "resolve_model": "llara_cli.model.resolve", "load_tokenizer": "llara_cli.model.resolve",
    "load_causal_lm": "llara_cli.model.resolve",
    "apply_adapter": "llara_cli.model.adapters", "LoraSettings": "llara_cli.model.adapters",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
