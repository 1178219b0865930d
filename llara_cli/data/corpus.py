"""Corpora and queries: Pyserini jsonl, BEIR jsonl/directories, TREC topics tsv, plain text.

Every id is checked where it is read (:func:`~llara_cli.data.records.check_id`: non-empty, no whitespace),
so a bad id names its file and line before any work is done. Swapped files are refused by their fields:
a query has no ``title`` and no ``contents`` (those are document fields: BEIR and Pyserini corpora), and a
document has no ``query`` field.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from llara_cli.data.records import Document, Query, check_id
from llara_cli.errors import UsageError
from llara_cli.storage.files import iter_jsonl, iter_lines

logger = logging.getLogger(__name__)

ID_FIELDS = ("_id", "id", "docid", "doc_id", "qid", "query_id")
TEXT_FIELDS = ("text", "contents", "query", "body")
TITLE_FIELD = "title"
BEIR_CORPUS_FILE = "corpus.jsonl"
BEIR_QUERIES_FILE = "queries.jsonl"
TSV_SUFFIXES = (".tsv", ".tsv.gz", ".txt", ".txt.gz")
DUPLICATES_SHOWN = 5


class Role:
    """What a file is read as; each role refuses the fields that only the other one has."""

    DOCUMENT = "document"
    QUERY = "query"


FOREIGN_FIELDS = {Role.DOCUMENT: ("query",), Role.QUERY: (TITLE_FIELD, "contents")}
SWAP_HINT = {Role.DOCUMENT: "--corpus and --queries swapped?", Role.QUERY: "--queries and --corpus swapped?"}


def _first_field(record: dict[str, Any], fields: tuple[str, ...], path: Path, line_number: int, what: str) -> Any:
    for field in fields:
        if field in record:
            return record[field]
    raise UsageError(f"{path}:{line_number}: no {what} field (expected one of {', '.join(fields)})")


def _parse_record(record: dict[str, Any], path: Path, line_number: int, role: str) -> tuple[str, str]:
    for field in FOREIGN_FIELDS[role]:
        if field in record:
            other = Role.QUERY if role == Role.DOCUMENT else Role.DOCUMENT
            raise UsageError(f"{path}:{line_number}: a {role} record with a {field!r} field looks like a {other} "
                             f"({SWAP_HINT[role]})")
    record_id = _first_field(record, ID_FIELDS, path, line_number, "id")
    if isinstance(record_id, bool) or not isinstance(record_id, (str, int)):
        raise UsageError(f"{path}:{line_number}: id must be a string, got {type(record_id).__name__}")
    text = _first_field(record, TEXT_FIELDS, path, line_number, "text")
    title = record.get(TITLE_FIELD) or ""
    if not isinstance(text, str) or not isinstance(title, str):
        raise UsageError(f"{path}:{line_number}: text and title must be strings")
    record_id = check_id(str(record_id), f"{path}:{line_number}", role)
    return record_id, f"{title} {text}".strip() if title else text


def resolve_beir_file(path: str | Path, file_name: str) -> Path:
    """A BEIR directory stands for its ``corpus.jsonl`` / ``queries.jsonl``; a file stands for itself."""
    path = Path(path)
    if path.is_dir():
        for candidate in (path / file_name, path / f"{file_name}.gz"):
            if candidate.is_file():
                return candidate
        raise UsageError(f"{path}: directory has no {file_name}")
    return path


def _is_tsv(path: Path) -> bool:
    return path.name.endswith(TSV_SUFFIXES)


def _iter_tsv_pairs(path: Path, role: str) -> Iterator[tuple[str, str]]:
    for line_number, line in iter_lines(path):
        if not line.strip():
            raise UsageError(f"{path}:{line_number}: empty line")
        fields = line.split("\t")
        if len(fields) < 2 or not fields[0].strip():
            raise UsageError(f"{path}:{line_number}: expected 'id<TAB>text'")
        yield check_id(fields[0].strip(), f"{path}:{line_number}", role), "\t".join(fields[1:])


def _iter_pairs(path: Path, role: str) -> Iterator[tuple[str, str]]:
    if _is_tsv(path):
        yield from _iter_tsv_pairs(path, role)
        return
    for line_number, record in iter_jsonl(path):
        yield _parse_record(record, path, line_number, role)


def iter_documents(path: str | Path) -> Iterator[Document]:
    """Stream a corpus (jsonl, BEIR dir, or ``id<TAB>text`` tsv) without holding it in memory."""
    for doc_id, text in _iter_pairs(resolve_beir_file(path, BEIR_CORPUS_FILE), Role.DOCUMENT):
        yield Document(doc_id, text)


def check_unique_ids(ids: Iterable[str], source: str | Path, what: str) -> None:
    """Raise listing the first duplicated ids, if any."""
    seen: set[str] = set()
    duplicates: list[str] = []
    for record_id in ids:
        if record_id in seen and record_id not in duplicates:
            duplicates.append(record_id)
            if len(duplicates) == DUPLICATES_SHOWN:
                break
        seen.add(record_id)
    if duplicates:
        raise UsageError(f"{source}: duplicate {what} ids: {', '.join(duplicates)}")


def read_corpus(path: str | Path) -> list[Document]:
    """Read a whole corpus; duplicate ids and an empty corpus are errors."""
    documents = list(iter_documents(path))
    if not documents:
        raise UsageError(f"{path}: corpus is empty")
    check_unique_ids((document.doc_id for document in documents), path, "document")
    return documents


def read_queries(path: str | Path) -> list[Query]:
    """Read queries from jsonl, a BEIR dir, or a Pyserini topics tsv (``qid<TAB>query``)."""
    source = resolve_beir_file(path, BEIR_QUERIES_FILE)
    queries = [Query(query_id, text) for query_id, text in _iter_pairs(source, Role.QUERY)]
    if not queries:
        raise UsageError(f"{path}: no queries")
    check_unique_ids((query.query_id for query in queries), path, "query")
    return queries


def queries_for_search(path: str | Path, split: str | None = None) -> list[Query]:
    """Queries to search. For a BEIR directory with ``qrels/<split>.tsv``, only that split's judged queries.

    A BEIR directory with a ``qrels/`` folder but no such split is refused, listing the splits it has.
    """
    from llara_cli.data.qrels import QRELS_DIR, read_qrels

    queries = read_queries(path)
    if split is None or not Path(path).is_dir() or not (Path(path) / QRELS_DIR).is_dir():
        return queries
    judged = {qrel.query_id for qrel in read_qrels(path, split)}
    selected = [query for query in queries if query.query_id in judged]
    if not selected:
        raise UsageError(f"{path}: no query of queries.jsonl is judged in qrels/{split}.tsv")
    logger.info("searching the %d queries judged in %s split %s (of %d)", len(selected), path, split, len(queries))
    return selected


def warn_if_swapped(queries: int, documents: int, corpus: str | Path) -> None:
    """Warn when there are more queries than documents: a sign of swapped --queries and --corpus."""
    if documents < queries:
        logger.warning("%d queries against %d documents of %s: are the queries and the corpus swapped?",
                       queries, documents, corpus)
