"""Texts to vectors: :class:`LlaraEncoder` (queries on the EBAR side, passages on the EBAE side), and the
sharded, resumable embedding directories ``llara encode`` writes (also under torchrun / accelerate)."""
from __future__ import annotations

from llara_cli._lazy import lazy_exports

_EXPORTS = {
    "LlaraEncoder": "llara_cli.encode.encoder",
    "EncodeJob": "llara_cli.encode.directory", "encode_to_directory": "llara_cli.encode.directory",
    "EmbeddingSet": "llara_cli.encode.embedding_store", "load_embeddings": "llara_cli.encode.embedding_store",
    "save_embeddings": "llara_cli.encode.embedding_store",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
