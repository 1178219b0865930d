"""How well a run and the qrels cover each other: judged queries it lacks, its unjudged queries, unjudged@10."""
from __future__ import annotations

import heapq
from dataclasses import dataclass

from llara_cli.errors import UsageError
from llara_cli.evaluation.measures import QrelsDict, RunDict

UNJUDGED_CUTOFF = 10
IDS_SHOWN = 5


@dataclass(frozen=True)
class Coverage:
    """Query overlap between one run and the qrels.

    ``missing_queries`` are judged but not returned (every measure scores them 0); ``unjudged_queries`` are
    returned but have no judgements (not scored). ``unjudged_at_10`` is the fraction of all top-10 documents,
    pooled over the evaluated queries, that have no judgement (ties ordered by ``(-score, doc_id)``).
    """

    judged_queries: int
    evaluated_queries: int
    missing_queries: tuple[str, ...]
    unjudged_queries: tuple[str, ...]
    unjudged_at_10: float | None
    judged_retrieved: int | None = None  # retrieved documents (all depths, evaluated queries) that are judged

    def to_dict(self) -> dict[str, object]:
        return {
            "judged_queries": self.judged_queries,
            "evaluated_queries": self.evaluated_queries,
            "missing_queries": list(self.missing_queries),
            "unjudged_queries": list(self.unjudged_queries),
            "unjudged_at_10": self.unjudged_at_10,
            "judged_retrieved": self.judged_retrieved,
        }


def sort_ids(ids: set[str]) -> tuple[str, ...]:
    """Numeric ids in numeric order, then the others alphabetically."""
    return tuple(sorted(ids, key=lambda query_id: (not query_id.isdigit(), len(query_id), query_id)))


def _first_ids(ids: tuple[str, ...]) -> str:
    shown = ", ".join(ids[:IDS_SHOWN])
    return f"{shown}, ..." if len(ids) > IDS_SHOWN else shown


def _unjudged_fraction(qrels: QrelsDict, run: RunDict, query_ids: set[str]) -> float | None:
    retrieved = unjudged = 0
    for query_id in query_ids:
        judged = qrels[query_id]
        # the first documents in rank_results order (-score, doc_id), without sorting the whole list
        top = heapq.nsmallest(UNJUDGED_CUTOFF, run[query_id].items(), key=lambda pair: (-pair[1], pair[0]))
        retrieved += len(top)
        unjudged += sum(doc_id not in judged for doc_id, _score in top)
    return unjudged / retrieved if retrieved else None


def measure_coverage(name: str, qrels: QrelsDict, run: RunDict) -> Coverage:
    """Coverage of run ``name``; a run sharing no query id with the qrels raises UsageError."""
    judged_ids, run_ids = set(qrels), set(run)
    evaluated = judged_ids & run_ids
    if not evaluated:
        raise UsageError(
            f"run {name}: none of its {len(run_ids)} query ids appear in the qrels "
            f"(run: {_first_ids(sort_ids(run_ids))}; qrels: {_first_ids(sort_ids(judged_ids))}); "
            "wrong qrels or split?"
        )
    return Coverage(
        judged_queries=len(judged_ids),
        evaluated_queries=len(evaluated),
        missing_queries=sort_ids(judged_ids - run_ids),
        unjudged_queries=sort_ids(run_ids - judged_ids),
        unjudged_at_10=_unjudged_fraction(qrels, run, evaluated),
        judged_retrieved=sum(doc_id in qrels[query_id] for query_id in evaluated for doc_id in run[query_id]),
    )


def coverage_warnings(name: str, coverage: Coverage) -> list[str]:
    """One-line warnings for partial overlap (none when run and qrels hold the same queries)."""
    warnings: list[str] = []
    if coverage.judged_retrieved == 0:
        warnings.append(
            f"run {name}: no retrieved document is judged in its {coverage.evaluated_queries} judged queries "
            "(every score is 0): doc ids from another corpus, or the wrong qrels?"
        )
    if coverage.missing_queries:
        warnings.append(
            f"run {name}: {len(coverage.missing_queries)} of the {coverage.judged_queries} judged queries are "
            f"missing from the run and score 0 ({_first_ids(coverage.missing_queries)})"
        )
    if coverage.unjudged_queries:
        returned = coverage.evaluated_queries + len(coverage.unjudged_queries)
        warnings.append(
            f"run {name}: {len(coverage.unjudged_queries)} of its {returned} queries have no judgements "
            f"and are not evaluated ({_first_ids(coverage.unjudged_queries)})"
        )
    return warnings
