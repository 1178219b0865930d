"""Record types shared by every reader and writer. Names follow ir_measures (``query_id``, ``doc_id``)."""
from __future__ import annotations

from typing import NamedTuple


class Document(NamedTuple):
    doc_id: str
    text: str  # title and body joined with one space when the source has a title


class Query(NamedTuple):
    query_id: str
    text: str
