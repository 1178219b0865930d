"""TREC runs: ``qid Q0 docid rank score tag``, ranks from 1, ties broken by ``(-score, doc_id)``.

Scores are written as the shortest decimal that reads back as the same float (``repr``), so a run file holds
the scores the model made: file order is score order, and no two different scores are written as one. (Six
decimals, Pyserini's ``{format_score(score)}``, made thousands of ties out of dense cosines near 0.95 that the model
never made -- and trec_eval, which ranks by the score column, broke them its own way.)
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from llara_cli.data.records import CONTROL_CHARACTER, check_id, check_new_pair, id_problem
from llara_cli.errors import UsageError
from llara_cli.storage.files import atomic_write, iter_lines

TREC_RUN_COLUMNS = 6
DEFAULT_RUN_TAG = "llara"


class ScoredDoc(NamedTuple):
    query_id: str
    doc_id: str
    score: float


def rank_results(scored: Iterable[tuple[str, float]]) -> list[tuple[str, float]]:
    """Order ``(doc_id, score)`` pairs best first; equal scores by doc_id so runs are deterministic."""
    return sorted(scored, key=lambda pair: (-pair[1], pair[0]))


def format_score(score: float) -> str:
    """The run file's score column: the shortest decimal that round-trips ``score`` as a float64 (``repr``)."""
    return repr(float(score))


def _bad_id(query_id: str, scored: Sequence[tuple[str, float]]) -> str:
    for what, record_id in (("query", query_id), *(("document", doc_id) for doc_id, _score in scored)):
        problem = id_problem(str(record_id))
        if problem is not None:
            return f"{what} {problem}"
    return "a malformed line"


def format_run_lines(results: Mapping[str, Sequence[tuple[str, float]]], tag: str = DEFAULT_RUN_TAG) -> Iterable[str]:
    """One block of run lines per query; an id that would break the 6 columns raises UsageError."""
    for query_id, scored in results.items():
        block = "".join(f"{query_id} Q0 {doc_id} {rank} {format_score(score)} {tag}\n"
                        for rank, (doc_id, score) in enumerate(rank_results(scored), start=1))
        if len(block.split()) != TREC_RUN_COLUMNS * len(scored):  # one C-speed check of every id of the query
            raise UsageError(f"cannot write a TREC run for query {query_id!r}: {_bad_id(query_id, scored)}")
        yield block


def check_finite_scores(results: Mapping[str, Sequence[tuple[str, float]]], path: str | Path) -> None:
    """Refuse a NaN or infinite score: a run's order would be meaningless, and readers refuse it."""
    for query_id, hits in results.items():
        for doc_id, score in hits:
            if not math.isfinite(score):
                raise UsageError(f"{path}: score {score} for query {query_id}, document {doc_id} is not finite; "
                                 "no run was written")


def write_run(path: str | Path, results: Mapping[str, Sequence[tuple[str, float]]], tag: str = DEFAULT_RUN_TAG) -> None:
    """Atomically write ``{query_id: [(doc_id, score), ...]}`` as a TREC run."""
    if any(char.isspace() for char in tag) or not tag:
        raise UsageError(f"run tag {tag!r} must be one non-empty word")
    check_finite_scores(results, path)
    with atomic_write(path) as handle:
        handle.writelines(format_run_lines(results, tag))


def read_run(path: str | Path) -> list[ScoredDoc]:
    """Strictly read a TREC run: a malformed line or a repeated (query, doc) pair names file and line."""
    path = Path(path)
    scored_docs: list[ScoredDoc] = []
    seen: set[tuple[str, str]] = set()
    for line_number, line in iter_lines(path):
        fields = line.split()
        if len(fields) != TREC_RUN_COLUMNS:
            raise UsageError(
                f"{path}:{line_number}: expected 6 columns 'qid Q0 docid rank score tag', got {len(fields)}"
            )
        query_id, _q0, doc_id, rank, score, _tag = fields
        if CONTROL_CHARACTER.search(line):  # one search per line; the ids are checked only when it finds one
            check_id(query_id, f"{path}:{line_number}", "query")
            check_id(doc_id, f"{path}:{line_number}", "document")
        try:
            int(rank)
        except ValueError:
            raise UsageError(f"{path}:{line_number}: rank {rank!r} is not an integer") from None
        try:
            score_value = float(score)
        except ValueError:
            raise UsageError(f"{path}:{line_number}: score {score!r} is not a number") from None
        if not math.isfinite(score_value):
            raise UsageError(f"{path}:{line_number}: score {score!r} is not finite")
        check_new_pair(seen, query_id, doc_id, f"{path}:{line_number}",
                       f"document {doc_id} listed twice for query {query_id}")
        scored_docs.append(ScoredDoc(query_id, doc_id, score_value))
    if not scored_docs:
        raise UsageError(f"{path}: run is empty")
    return scored_docs


def group_run(scored_docs: Iterable[ScoredDoc]) -> dict[str, list[tuple[str, float]]]:
    """``{query_id: [(doc_id, score), ...]}`` best first."""
    grouped: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for scored in scored_docs:
        grouped[scored.query_id].append((scored.doc_id, scored.score))
    return {query_id: rank_results(pairs) for query_id, pairs in grouped.items()}
