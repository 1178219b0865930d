"""Readers and writers for corpora, queries, qrels and runs (strict: bad lines name file and line)."""
from __future__ import annotations

from llara_cli.data.corpus import iter_documents, read_corpus, read_queries
from llara_cli.data.qrels import Qrel, read_qrels
from llara_cli.data.records import Document, Query
from llara_cli.data.runs import ScoredDoc, group_run, read_run, write_run

__all__ = [
    "Document", "Query", "Qrel", "ScoredDoc",
    "iter_documents", "read_corpus", "read_queries", "read_qrels", "read_run", "write_run", "group_run",
]
