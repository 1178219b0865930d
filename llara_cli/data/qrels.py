"""Relevance judgements: TREC qrels (``qid 0 docid rel``) and BEIR tsv (header ``query-id corpus-id score``)."""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from llara_cli.data.files import iter_lines
from llara_cli.errors import UsageError

TREC_QRELS_COLUMNS = 4
BEIR_QRELS_COLUMNS = 3
BEIR_HEADER_FIRST_FIELD = "query-id"
DEFAULT_BEIR_SPLIT = "test"


class Qrel(NamedTuple):
    query_id: str
    doc_id: str
    relevance: int


def resolve_qrels_file(path: str | Path, split: str = DEFAULT_BEIR_SPLIT) -> Path:
    """A BEIR directory stands for ``qrels/<split>.tsv``; a file stands for itself."""
    path = Path(path)
    if path.is_dir():
        candidate = path / "qrels" / f"{split}.tsv"
        if not candidate.is_file():
            raise UsageError(f"{path}: directory has no qrels/{split}.tsv")
        return candidate
    return path


def read_qrels(path: str | Path, split: str = DEFAULT_BEIR_SPLIT) -> list[Qrel]:
    """Read TREC or BEIR qrels; the format is recognised per file, malformed lines name file and line."""
    source = resolve_qrels_file(path, split)
    qrels: list[Qrel] = []
    seen: set[tuple[str, str]] = set()
    for line_number, line in iter_lines(source):
        fields = line.split()
        if line_number == 1 and fields and fields[0] == BEIR_HEADER_FIRST_FIELD:
            continue
        if not fields:
            raise UsageError(f"{source}:{line_number}: empty line")
        if len(fields) == TREC_QRELS_COLUMNS:
            query_id, _iteration, doc_id, relevance = fields
        elif len(fields) == BEIR_QRELS_COLUMNS:
            query_id, doc_id, relevance = fields
        else:
            raise UsageError(
                f"{source}:{line_number}: unknown qrels format: expected 'qid 0 docid rel' (TREC) "
                f"or 'query-id<TAB>corpus-id<TAB>score' (BEIR), got {len(fields)} columns"
            )
        try:
            relevance_value = int(float(relevance))
        except ValueError:
            raise UsageError(f"{source}:{line_number}: relevance {relevance!r} is not a number") from None
        if (query_id, doc_id) in seen:
            raise UsageError(f"{source}:{line_number}: duplicate judgement for query {query_id}, document {doc_id}")
        seen.add((query_id, doc_id))
        qrels.append(Qrel(query_id, doc_id, relevance_value))
    if not qrels:
        raise UsageError(f"{source}: no judgements")
    return qrels
