"""Fusion that does not hurt: a BM25-anchored convex combination, its dense weight tuned on labelled queries.

``anchored_fusion`` scores a document ``(1 - w) * bm25 + w * dense`` over min-max-normalised scores, the first
run being the anchor (BM25) and the others sharing ``w``. ``w = 0`` is the anchor run unchanged.

* ``tune_dense_weight`` picks ``w`` from ``DENSE_WEIGHT_GRID`` (0 included) by nDCG@10 on labelled *tuning*
  queries (e.g. SciFact train); ties go to the smaller weight, and the best ``w > 0`` is kept only if it beats
  ``w = 0`` (BM25 alone) significantly on those queries (paired t-test, p < 0.05): a dense run that adds
  nothing, or only chance gains, gets 0. Tuning queries that are also evaluated are refused: the weight
  would be chosen on the test set.
* ``ROBUST_DENSE_WEIGHT`` is the label-free default: with the anchor normalised to [0, 1], a dense weight
  ``w`` can only swap two BM25 results whose normalised BM25 scores differ by less than ``w / (1 - w)``
  (0.25 at ``w = 0.2``), so the dense run reorders BM25's near-ties and cannot bury a clear BM25 winner.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping, Sequence

from llara_cli.data.qrels import Qrel
from llara_cli.data.runs import rank_results
from llara_cli.errors import UsageError
from llara_cli.evaluation.significance import SIGNIFICANCE_LEVEL
from llara_cli.search.fusion import FUSION_DEPTH, FusedResults, Results, weighted_fusion

logger = logging.getLogger(__name__)

TUNING_MEASURE = "nDCG@10"
DENSE_WEIGHT_STEPS = 20
DENSE_WEIGHT_GRID = tuple(step / DENSE_WEIGHT_STEPS for step in range(DENSE_WEIGHT_STEPS + 1))  # 0, 0.05, ..., 1
ROBUST_DENSE_WEIGHT = 0.2
TIE_TOLERANCE = 1e-9  # a larger weight must beat the best score by more than this to be chosen


@dataclasses.dataclass(frozen=True)
class TunedWeight:
    """The chosen dense weight and the evidence: the tuning score of every grid weight."""

    dense_weight: float
    measure: str
    tuning_queries: int
    scores: dict[float, float]  # grid weight -> mean measure over the tuning queries
    best_weight: float  # the best grid weight by mean (smaller on ties), before the significance check
    p_value: float | None  # paired t-test of best_weight against weight 0; None when best_weight is 0

    def to_dict(self) -> dict:
        return {"dense_weight": self.dense_weight, "measure": self.measure, "tuning_queries": self.tuning_queries,
                "best_weight": self.best_weight, "p_value_vs_bm25_alone": self.p_value,
                "significance_level": SIGNIFICANCE_LEVEL,
                "grid": [{"dense_weight": weight, self.measure: score} for weight, score in self.scores.items()]}


def _check_dense_weight(dense_weight: float) -> float:
    dense_weight = float(dense_weight)
    if not 0.0 <= dense_weight <= 1.0:
        raise UsageError(f"the dense weight must lie in [0, 1], got {dense_weight}")
    return dense_weight


def anchored_weights(dense_weight: float, runs: int) -> list[float]:
    """``[1 - w, w / (runs - 1), ...]``: the anchor run keeps ``1 - w``, the others share ``w`` (one run: ``[1]``)."""
    dense_weight = _check_dense_weight(dense_weight)
    if runs < 1:
        raise UsageError("fusion needs at least one run")
    if runs == 1:
        return [1.0]
    return [1.0 - dense_weight] + [dense_weight / (runs - 1)] * (runs - 1)


def anchored_fusion(runs: Sequence[Results], dense_weight: float, depth: int = FUSION_DEPTH) -> FusedResults:
    """Convex combination of min-max-normalised scores anchored on ``runs[0]``; ``dense_weight`` 0 returns it as is."""
    weights = anchored_weights(dense_weight, len(runs))
    if weights[0] == 1.0:  # exactly the anchor's ranking, not a re-sort that could move its ties
        return {query_id: rank_results(scored)[:depth] for query_id, scored in runs[0].items()}
    return weighted_fusion(runs, weights=weights, depth=depth)


def check_disjoint(tuning_query_ids: Iterable[str], evaluated_query_ids: Iterable[str]) -> None:
    """Refuse tuning queries that are also evaluated: the weight would be chosen on the test set."""
    shared = sorted(set(tuning_query_ids) & set(evaluated_query_ids))
    if shared:
        shown = ", ".join(shared[:5]) + (", ..." if len(shared) > 5 else "")
        raise UsageError(
            f"{len(shared)} tuning queries are also in the runs to fuse ({shown}): tune on queries the evaluation "
            "never sees (e.g. the train split); to reuse a weight tuned on another collection pass it as "
            "--method weighted --weights"
        )


def _per_query(fused: FusedResults, judged: Mapping[str, Mapping[str, int]], measure) -> dict[str, float]:
    from llara_cli.evaluation.measures import calc_per_query

    run = {query_id: dict(scored) for query_id, scored in fused.items() if query_id in judged}
    return calc_per_query({TUNING_MEASURE: measure}, dict(judged), run)[TUNING_MEASURE]


def tune_dense_weight(
    tuning_runs: Sequence[Results],
    qrels: Iterable[Qrel],
    grid: Sequence[float] = DENSE_WEIGHT_GRID,
    depth: int = FUSION_DEPTH,
) -> TunedWeight:
    """The grid weight whose ``anchored_fusion`` of ``tuning_runs`` scores the best nDCG@10 on ``qrels``.

    Only judged queries that the anchor run returns are scored. Ties (within ``TIE_TOLERANCE``) go to the
    smaller weight; a best weight above 0 that is not significantly better than 0 (paired t-test over the
    tuning queries at ``SIGNIFICANCE_LEVEL``) gives 0: the anchor (BM25) alone.
    """
    from llara_cli.evaluation.measures import parse_measures, qrels_to_dict
    from llara_cli.evaluation.significance import paired_t_test

    grid = sorted({_check_dense_weight(weight) for weight in grid})
    if not grid:
        raise UsageError("the dense weight grid is empty")
    judged = qrels_to_dict(qrels)
    judged = {query_id: docs for query_id, docs in judged.items() if query_id in tuning_runs[0]}
    if not judged:
        raise UsageError("no tuning query is both judged in the tuning qrels and returned by the first tuning run")
    measure = parse_measures([TUNING_MEASURE])[TUNING_MEASURE]
    per_query = {weight: _per_query(anchored_fusion(tuning_runs, weight, depth), judged, measure) for weight in grid}
    query_ids = sorted(judged)
    values = {weight: [per_query[weight].get(query_id, 0.0) for query_id in query_ids] for weight in grid}
    scores = {weight: sum(values[weight]) / len(query_ids) for weight in grid}
    best = grid[0]
    for weight in grid[1:]:
        if scores[weight] > scores[best] + TIE_TOLERANCE:
            best = weight
    p_value = paired_t_test(values[best], values[grid[0]]) if best > grid[0] else None
    chosen = best if p_value is not None and p_value < SIGNIFICANCE_LEVEL else grid[0]
    logger.info("dense weight %.2f (best %.2f: %s %.4f vs %.4f at %.2f, p %s) on %d queries", chosen, best,
                TUNING_MEASURE, scores[best], scores[grid[0]], grid[0], p_value, len(judged))
    return TunedWeight(dense_weight=chosen, measure=TUNING_MEASURE, tuning_queries=len(judged), scores=scores,
                       best_weight=best, p_value=p_value)
