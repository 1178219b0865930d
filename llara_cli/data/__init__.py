"""Readers and writers for corpora, queries, qrels and runs (strict: bad lines name file and line)."""
from __future__ import annotations

from llara_cli._lazy import lazy_exports

_EXPORTS = {
    "iter_documents": "llara_cli.data.corpus",
    "read_corpus": "llara_cli.data.corpus",
    "read_queries": "llara_cli.data.corpus",
    "Qrel": "llara_cli.data.qrels",
    "read_qrels": "llara_cli.data.qrels",
    "Document": "llara_cli.data.records",
    "Query": "llara_cli.data.records",
    "ScoredDoc": "llara_cli.data.runs",
    "group_run": "llara_cli.data.runs",
    "read_run": "llara_cli.data.runs",
    "write_run": "llara_cli.data.runs",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
