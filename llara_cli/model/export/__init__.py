"""A llara model for other tools: a sentence-transformers directory, a plain Hugging Face directory, a model card."""
from __future__ import annotations

from llara_cli._lazy import lazy_exports

_EXPORTS = {
    "ExportFormat": "llara_cli.model.export.export", "ExportResult": "llara_cli.model.export.export",
    "export_model": "llara_cli.model.export.export",
    "build_sentence_transformer": "llara_cli.model.export.export",
    "render_model_card": "llara_cli.model.export.card",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
