"""Fusing ranked lists: reciprocal rank fusion and weighted sums of min-max-normalised scores.

``fuse_run_files`` also offers the BM25-anchored fusions of ``fusion_tuning`` (``robust``, the default, and
``tuned``) and writes the run's provenance (method, weights and how they were chosen) beside it as
``<run>.json``.
"""
from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from enum import Enum
from pathlib import Path

from llara_cli.storage.files import write_json
from llara_cli.data.qrels import Qrel
from llara_cli.data.runs import group_run, rank_results, read_run, write_run
from llara_cli.errors import UsageError

logger = logging.getLogger(__name__)

RRF_K = 60
FUSION_DEPTH = 1000
CONSTANT_SCORE_NORMALISED = 1.0  # every document of a query whose scores are all equal
PROVENANCE_SUFFIX = ".json"  # fused.trec -> fused.trec.json

Results = Mapping[str, Sequence[tuple[str, float]]]  # query_id -> [(doc_id, score), ...]
FusedResults = dict[str, list[tuple[str, float]]]


class FusionMethod(str, Enum):
    ROBUST = "robust"  # BM25-anchored convex combination with a small fixed dense weight (no labels needed)
    TUNED = "tuned"  # the same, its dense weight tuned on labelled queries
    RRF = "rrf"
    WEIGHTED = "weighted"


DEFAULT_FUSION_METHOD = FusionMethod.ROBUST


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


def _check_weights(weights: Sequence[float] | None, count: int) -> list[float]:
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
    run_weights = _check_weights(weights, len(runs))
    fused: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for run, weight in zip(runs, run_weights):
        for query_id, scored in run.items():
            normalised = min_max_normalise(rank_results(scored)[:depth])
            for doc_id, score in normalised.items():
                fused[query_id][doc_id] += weight * score
    return _top(fused, depth)


def provenance_path(run: str | Path) -> Path:
    """Where a fused run's provenance lives: ``<run>.json`` beside it."""
    run = Path(run)
    return run.with_name(run.name + PROVENANCE_SUFFIX)


def _parse_method(method: FusionMethod | str) -> FusionMethod:
    try:
        return FusionMethod(method)
    except ValueError:
        choices = ", ".join(choice.value for choice in FusionMethod)
        raise UsageError(f"unknown fusion method {method!r}; choose one of {choices}") from None


def _check_distinct(paths: Sequence[str | Path], what: str) -> None:
    repeated = sorted({str(path) for path in paths if sum(Path(other).resolve() == Path(path).resolve() for other in paths) > 1})
    if repeated:
        raise UsageError(f"{what} {', '.join(repeated)} is given more than once: fuse each run once")


def _anchored(
    method: FusionMethod, runs: list, tune_runs: Sequence[str | Path] | None, tune_qrels: Sequence[Qrel] | None,
    depth: int,
) -> tuple[FusedResults, dict]:
    from llara_cli.search.fusion_tuning import (
        ROBUST_DENSE_WEIGHT, anchored_fusion, anchored_weights, check_disjoint, tune_dense_weight,
    )

    if method is FusionMethod.ROBUST:
        dense_weight, chosen = ROBUST_DENSE_WEIGHT, {"chosen_by": "robust default (no labels)"}
    else:
        if not tune_runs or tune_qrels is None:
            raise UsageError("--method tuned needs the runs of the same systems on the tuning queries and their qrels")
        if len(tune_runs) != len(runs):
            raise UsageError(f"got {len(tune_runs)} tuning runs for {len(runs)} runs to fuse; give one per run, "
                             "in the same order")
        _check_distinct(tune_runs, "tuning run")
        tuning = [group_run(read_run(path)) for path in tune_runs]
        check_disjoint({qrel.query_id for qrel in tune_qrels} & set(tuning[0]), runs[0])
        tuned = tune_dense_weight(tuning, tune_qrels, depth=depth)
        dense_weight = tuned.dense_weight
        chosen = {"chosen_by": f"tuned by {tuned.measure} on labelled queries",
                  "tuning_runs": [str(path) for path in tune_runs], "tuning": tuned.to_dict()}
    fused = anchored_fusion(runs, dense_weight, depth=depth)
    return fused, {"dense_weight": dense_weight, "weights": anchored_weights(dense_weight, len(runs)), **chosen}


def fuse_run_files(
    paths: Sequence[str | Path],
    method: FusionMethod | str,
    out: str | Path,
    k: int = RRF_K,
    weights: Sequence[float] | None = None,
    depth: int = FUSION_DEPTH,
    tune_runs: Sequence[str | Path] | None = None,
    tune_qrels: Sequence[Qrel] | None = None,
) -> FusedResults:
    """Read TREC runs, fuse them with ``method`` and atomically write the fused run and its provenance.

    ``robust`` and ``tuned`` anchor on the first run (BM25): its weight is ``1 - w``, the others share ``w``;
    ``tuned`` chooses ``w`` on ``tune_runs`` (the same systems' runs on labelled tuning queries, same order)
    scored against ``tune_qrels``, and refuses tuning queries that are also in the runs to fuse.
    """
    method = _parse_method(method)
    if weights is not None and method is not FusionMethod.WEIGHTED:
        raise UsageError(f"weights apply to weighted fusion only, not to {method.value}")
    if (tune_runs or tune_qrels is not None) and method is not FusionMethod.TUNED:
        raise UsageError(f"tuning runs and qrels apply to --method tuned only, not to {method.value}")
    _check_distinct(paths, "run")
    runs = [group_run(read_run(path)) for path in paths]
    provenance: dict = {"method": method.value, "runs": [str(path) for path in paths], "depth": depth}
    if method is FusionMethod.RRF:
        fused = reciprocal_rank_fusion(runs, k=k, depth=depth)
        provenance["rrf_k"] = k
    elif method is FusionMethod.WEIGHTED:
        fused = weighted_fusion(runs, weights=weights, depth=depth)
        provenance.update(weights=_check_weights(weights, len(runs)), chosen_by="given")
    else:
        fused, chosen = _anchored(method, runs, tune_runs, tune_qrels, depth)
        provenance.update(chosen)
    write_run(out, fused, tag=f"llara-{method.value}")
    write_json(provenance_path(out), provenance)
    logger.info("fused %d runs over %d queries into %s", len(runs), len(fused), out)
    return fused
