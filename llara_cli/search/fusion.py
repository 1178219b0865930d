"""Fusing ranked lists in memory: reciprocal rank fusion and weighted sums of min-max-normalised scores.

The BM25-anchored fusion and its tuning are :mod:`llara_cli.search.anchored_fusion`; fusing run *files*
(what ``llara search --fuse`` calls) is :mod:`llara_cli.search.run_fusion`.
"""
from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence

from llara_cli.data.runs import rank_results
from llara_cli.errors import UsageError

logger = logging.getLogger(__name__)

RRF_K = 60
FUSION_DEPTH = 1000
CONSTANT_SCORE_NORMALISED = 1.0  # every document of a query whose scores are all equal

Results = Mapping[str, Sequence[tuple[str, float]]]  # query_id -> [(doc_id, score), ...]
FusedResults = dict[str, list[tuple[str, float]]]


def _check_runs(runs: Sequence[Results], depth: int) -> None:
    if not runs:
        raise UsageError("fusion needs at least one run")
    if depth < 1:
        raise UsageError(f"fusion depth must be at least 1, got {depth}")


def _top(scored_by_query: dict[str, dict[str, float]], depth: int) -> FusedResults:
    return {query_id: rank_results(scores.items())[:depth] for query_id, scores in scored_by_query.items()}


def reciprocal_rank_fusion(runs: Sequence[Results], k: int = RRF_K, depth: int = FUSION_DEPTH) -> FusedResults:
    """RRF (Cormack et al., 2009): a document scores ``sum over runs of 1 / (k + rank)``.

    Each run is ranked by ``(-score, doc_id)`` and only its first ``depth`` documents count (ranks from 1);
    a run that misses a document adds nothing. The fused lists keep ``depth`` documents, best first.
    """
    _check_runs(runs, depth)
    if k < 0:
        raise UsageError(f"RRF k must be non-negative, got {k}")
    fused: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for run in runs:
        for query_id, scored in run.items():
            for rank, (doc_id, _score) in enumerate(rank_results(scored)[:depth], start=1):
                fused[query_id][doc_id] += 1.0 / (k + rank)
    return _top(fused, depth)


def min_max_normalise(scored: Sequence[tuple[str, float]]) -> dict[str, float]:
    """Scale one query's scores to [0, 1]; if they are all equal every document gets 1.0 (it was retrieved)."""
    if not scored:
        return {}
    scores = [score for _doc_id, score in scored]
    low, high = min(scores), max(scores)
    if high == low:
        return {doc_id: CONSTANT_SCORE_NORMALISED for doc_id, _score in scored}
    return {doc_id: (score - low) / (high - low) for doc_id, score in scored}


def check_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    if weights is None:
        return [1.0 / count] * count
    weights = [float(weight) for weight in weights]
    if len(weights) != count:
        raise UsageError(f"got {len(weights)} fusion weights for {count} runs; give one weight per run")
    if any(not math.isfinite(weight) or weight < 0 for weight in weights) or not any(weights):
        raise UsageError(f"fusion weights must be non-negative numbers, not all 0; got {weights}")
    return weights


def weighted_fusion(
    runs: Sequence[Results], weights: Sequence[float] | None = None, depth: int = FUSION_DEPTH,
) -> FusedResults:
    """Weighted sum of per-query min-max-normalised scores (default: equal weights 1/len(runs)).

    A document a run does not return contributes 0 from that run; a query whose scores in a run are all equal
    gives each of its documents 1.0 there. Each run's first ``depth`` documents count; the fused lists keep
    ``depth`` documents, ranked by ``(-score, doc_id)``.
    """
    _check_runs(runs, depth)
    run_weights = check_weights(weights, len(runs))
    fused: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for run, weight in zip(runs, run_weights):
        for query_id, scored in run.items():
            normalised = min_max_normalise(rank_results(scored)[:depth])
            for doc_id, score in normalised.items():
                fused[query_id][doc_id] += weight * score
    return _top(fused, depth)


