"""Relevance judgements: TREC qrels (``qid 0 docid rel``) and BEIR tsv (header ``query-id corpus-id score``).

The format is decided once per file, from its first line: a BEIR header (tab-separated lines when the header
is, ids may not hold whitespace), else the first line's column count (4: TREC, 3: headerless BEIR); every
line is then held to it. Relevance is an integer: ``1``, ``-1`` and ``2.0`` are read, ``0.6``, ``inf`` and ``nan``
are refused.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

from llara_cli.data.records import check_id, check_new_pair
from llara_cli.errors import UsageError
from llara_cli.storage.files import iter_lines

TREC_QRELS_COLUMNS = 4
BEIR_QRELS_COLUMNS = 3
BEIR_HEADER_FIRST_FIELD = "query-id"
BEIR_SEPARATOR = "\t"
DEFAULT_BEIR_SPLIT = "test"
QRELS_DIR = "qrels"
QRELS_SUFFIX = ".tsv"


class Qrel(NamedTuple):
    query_id: str
    doc_id: str
    relevance: int


class _Format(NamedTuple):
    name: str
    columns: int
    separator: str | None  # None: any whitespace
    example: str


TREC = _Format("TREC", TREC_QRELS_COLUMNS, None, "'qid 0 docid rel'")
BEIR = _Format("BEIR", BEIR_QRELS_COLUMNS, BEIR_SEPARATOR, "'query-id<TAB>corpus-id<TAB>score'")
SPACED_BEIR = _Format("BEIR", BEIR_QRELS_COLUMNS, None, "'query-id corpus-id score'")  # a header without tabs
HEADERLESS_BEIR = _Format("3-column", BEIR_QRELS_COLUMNS, None, "'qid docid rel'")


def available_splits(directory: str | Path) -> list[str]:
    """The splits of a BEIR directory: the ``qrels/<split>.tsv`` files it holds."""
    qrels_dir = Path(directory) / QRELS_DIR
    if not qrels_dir.is_dir():
        return []
    return sorted(entry.name[:-len(QRELS_SUFFIX)] for entry in qrels_dir.iterdir()
                  if entry.name.endswith(QRELS_SUFFIX) and entry.is_file())


def resolve_qrels_file(path: str | Path, split: str = DEFAULT_BEIR_SPLIT) -> Path:
    """A BEIR directory stands for ``qrels/<split>.tsv`` (an unknown split lists the ones there are)."""
    path = Path(path)
    if not path.is_dir():
        return path
    candidate = path / QRELS_DIR / f"{split}{QRELS_SUFFIX}"
    if not candidate.is_file():
        splits = available_splits(path)
        listed = f"available splits: {', '.join(splits)}" if splits else f"it has no {QRELS_DIR}/*{QRELS_SUFFIX}"
        raise UsageError(f"{path}: directory has no {QRELS_DIR}/{split}{QRELS_SUFFIX} (split {split!r}); {listed}")
    return candidate


def parse_relevance(text: str, where: str) -> int:
    """An integer relevance grade; a fractional or non-finite value raises naming ``where``."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{where}: relevance {text!r} is not a number") from None
    if not math.isfinite(value) or not value.is_integer():
        raise UsageError(f"{where}: relevance {text!r} is not an integer grade")
    return int(value)


def _split(line: str, qrels_format: _Format) -> list[str]:
    if qrels_format.separator is None:
        return line.split()
    return [field.strip() for field in line.strip().split(qrels_format.separator)]


def _file_format(first_line: str, where: str) -> _Format:
    fields = first_line.split()
    if fields and fields[0] == BEIR_HEADER_FIRST_FIELD:
        return BEIR if BEIR_SEPARATOR in first_line else SPACED_BEIR
    if len(fields) == TREC_QRELS_COLUMNS:
        return TREC
    if len(fields) == BEIR_QRELS_COLUMNS:
        return HEADERLESS_BEIR
    raise UsageError(
        f"{where}: unknown qrels format: expected 'qid 0 docid rel' (TREC) "
        f"or 'query-id<TAB>corpus-id<TAB>score' (BEIR), got {len(fields)} columns"
    )


def read_qrels(path: str | Path, split: str = DEFAULT_BEIR_SPLIT) -> list[Qrel]:
    """Read TREC or BEIR qrels; the format is recognised once per file, malformed lines name file and line."""
    source = resolve_qrels_file(path, split)
    qrels: list[Qrel] = []
    seen: set[tuple[str, str]] = set()
    qrels_format: _Format | None = None
    for line_number, line in iter_lines(source):
        where = f"{source}:{line_number}"
        if not line.strip():
            raise UsageError(f"{where}: empty line")
        if qrels_format is None:
            qrels_format = _file_format(line, where)
            if qrels_format in (BEIR, SPACED_BEIR):
                continue  # the header
        fields = _split(line, qrels_format)
        if len(fields) != qrels_format.columns:
            raise UsageError(f"{where}: expected {qrels_format.columns} columns {qrels_format.example} like the "
                             f"first line ({qrels_format.name} qrels), got {len(fields)}")
        if qrels_format is TREC:
            query_id, _iteration, doc_id, relevance = fields
        else:
            query_id, doc_id, relevance = fields
        check_id(query_id, where, "query")
        check_id(doc_id, where, "document")
        relevance_value = parse_relevance(relevance, where)
        check_new_pair(seen, query_id, doc_id, where, f"duplicate judgement for query {query_id}, document {doc_id}")
        qrels.append(Qrel(query_id, doc_id, relevance_value))
    if not qrels:
        raise UsageError(f"{source}: no judgements")
    return qrels
