"""Record types shared by every reader and writer, and the checks they all use (ids, repeated pairs).

Names follow ir_measures (``query_id``, ``doc_id``). Ids end up in whitespace-separated files (TREC runs,
TREC qrels, the ``docid`` file of an index), so an id is a non-empty string without any whitespace; it holds no
control character (echoed raw, ESC and CR rewrite a terminal) and fits one Lucene term (32,766 UTF-8 bytes).
"""
from __future__ import annotations

import re
from typing import NamedTuple

from llara_cli.errors import UsageError

WHITESPACE = re.compile(r"\s")  # the characters str.split() splits on
CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0, DEL and C1: a terminal acts on them
MAX_ID_BYTES = 32766  # Lucene's longest term: a longer id cannot be indexed (BM25) and is no real id


class Document(NamedTuple):
    doc_id: str
    text: str  # title and body joined with one space when the source has a title


class Query(NamedTuple):
    query_id: str
    text: str


def id_problem(record_id: str) -> str | None:
    """Why ``record_id`` cannot be written to a TREC file, or None when it can."""
    if not record_id:
        return "empty id"
    if len(record_id) > MAX_ID_BYTES // 4 and len(record_id.encode("utf-8")) > MAX_ID_BYTES:
        return (f"id {record_id[:40]!r}... is {len(record_id.encode('utf-8'))} bytes long "
                f"(at most {MAX_ID_BYTES}, Lucene's longest term)")
    if WHITESPACE.search(record_id):
        return f"id {record_id!r} contains whitespace (TREC runs and qrels are whitespace-separated)"
    control = CONTROL_CHARACTER.search(record_id)
    if control is not None:
        return f"id {record_id!r} contains the control character U+{ord(control.group()):04X}"
    return None


def check_id(record_id: str, where: str, what: str = "") -> str:
    """Return ``record_id`` or raise naming ``where`` (``file:line``); ``what`` is e.g. ``"document"``."""
    problem = id_problem(record_id)
    if problem is not None:
        raise UsageError(f"{where}: {what + ' ' if what else ''}{problem}")
    return record_id


def check_no_control(record_id: str | None, where: str, what: str = "") -> str | None:
    """Return ``record_id`` (or None) unless it holds a control character (ids a format allows to hold spaces)."""
    control = CONTROL_CHARACTER.search(record_id) if record_id is not None else None
    if control is not None:
        raise UsageError(f"{where}: {what + ' ' if what else ''}id {record_id!r} contains the control character "
                         f"U+{ord(control.group()):04X}")
    return record_id


def check_new_pair(seen: set[tuple[str, str]], query_id: str, doc_id: str, where: str, problem: str) -> None:
    """Remember ``(query_id, doc_id)``, or raise ``where: problem`` when this file already had the pair."""
    if (query_id, doc_id) in seen:
        raise UsageError(f"{where}: {problem}")
    seen.add((query_id, doc_id))
