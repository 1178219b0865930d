"""``evaluate_runs``: measure several runs on one set of qrels and compare them to a baseline run."""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from llara_cli.data.qrels import Qrel
from llara_cli.data.runs import ScoredDoc
from llara_cli.errors import UsageError
from llara_cli.evaluation.coverage import coverage_warnings, measure_coverage, sort_ids
from llara_cli.evaluation.measures import (
    DEFAULT_MEASURES,
    aggregate,
    calc_per_query,
    parse_measures,
    qrels_to_dict,
    run_to_dict,
    split_measure_names,
)
from llara_cli.evaluation.report import Comparison, EvaluationReport, RunResult
from llara_cli.evaluation.significance import SIGNIFICANCE_LEVEL, bonferroni_correct, is_significant, paired_t_test

if TYPE_CHECKING:
    from ir_measures import Measure

logger = logging.getLogger(__name__)

RECALL_CURVE_CUTOFFS = (1, 2, 3, 5, 10, 20, 30, 50, 100, 200, 300, 500, 1000)


def _with_recall_curve(measures: dict[str, Measure]) -> tuple[dict[str, Measure], dict[int, str]]:
    """The measures plus R@k for the recall curve (one ir_measures pass), and the label of each R@k."""
    combined = dict(measures)
    curve_labels: dict[int, str] = {}
    recalls = parse_measures([f"R@{cutoff}" for cutoff in RECALL_CURVE_CUTOFFS])
    for cutoff, (label, recall) in zip(RECALL_CURVE_CUTOFFS, recalls.items()):
        requested = next((name for name, measure in measures.items() if measure == recall), None)
        if requested is None:
            combined[label] = recall
        curve_labels[cutoff] = requested or label
    return combined, curve_labels


def _compare(
    result: RunResult, baseline: RunResult, query_ids: Sequence[str], family: int, correct: bool,
) -> dict[str, Comparison]:
    comparisons: dict[str, Comparison] = {}
    for label, values in result.per_query.items():
        baseline_values = baseline.per_query[label]
        raw_p_value = paired_t_test(
            [values[query_id] for query_id in query_ids], [baseline_values[query_id] for query_id in query_ids]
        )
        p_value = bonferroni_correct(raw_p_value, family) if correct else raw_p_value
        comparisons[label] = Comparison(
            measure=label,
            delta=result.aggregates[label] - baseline.aggregates[label],
            p_value=p_value,
            raw_p_value=raw_p_value,
            significant=is_significant(p_value, SIGNIFICANCE_LEVEL),
        )
    return comparisons


def evaluate_runs(
    qrels: Iterable[Qrel],
    runs: Mapping[str, Sequence[ScoredDoc]],
    measures: Sequence[str] = DEFAULT_MEASURES,
    baseline: str | None = None,
    bonferroni: bool = False,
) -> EvaluationReport:
    """Evaluate named runs with ir_measures and test each against ``baseline`` (a key of ``runs``).

    Every measure is computed over all judged queries; a judged query a run does not return scores 0 there
    (so runs that skip hard queries are not flattered). Run queries without judgements are reported in the
    coverage and left out. Significance: paired two-sided t-test per measure over the judged queries at
    alpha 0.05; ``bonferroni`` multiplies each p-value by the number of comparisons (compared runs x measures).
    A run sharing no query id with the qrels raises UsageError; partial overlap adds a warning to the report.
    """
    if not runs:
        raise UsageError("no runs to evaluate")
    if baseline is not None and baseline not in runs:
        raise UsageError(f"baseline {baseline!r} is not one of the runs: {', '.join(runs)}")
    parsed = parse_measures(split_measure_names([measures]) if isinstance(measures, str) else list(measures))
    judged = qrels_to_dict(qrels)
    if not judged:
        raise UsageError("the qrels hold no judgements")
    query_ids = sort_ids(set(judged))
    results: dict[str, RunResult] = {}
    warnings: list[str] = []
    combined, curve_labels = _with_recall_curve(parsed)
    for name, scored_docs in runs.items():
        run = run_to_dict(scored_docs)
        coverage = measure_coverage(name, judged, run)
        warnings.extend(coverage_warnings(name, coverage))
        per_query = calc_per_query(combined, judged, run)
        aggregates = aggregate(combined, per_query)
        results[name] = RunResult(
            name=name,
            aggregates={label: aggregates[label] for label in parsed},
            per_query={label: per_query[label] for label in parsed},
            coverage=coverage,
            recall_curve={cutoff: aggregates[label] for cutoff, label in curve_labels.items()},
        )
    for warning in warnings:
        logger.debug(warning)
    family = (len(runs) - 1) * len(parsed) if baseline is not None else 0
    if baseline is not None:
        results = {
            name: result if name == baseline else dataclasses.replace(
                result, comparisons=_compare(result, results[baseline], query_ids, family, bonferroni)
            )
            for name, result in results.items()
        }
    return EvaluationReport(
        measures=tuple(parsed),
        runs=results,
        judged_queries=len(judged),
        baseline=baseline,
        alpha=SIGNIFICANCE_LEVEL,
        bonferroni=bonferroni,
        comparisons_in_family=family,
        warnings=tuple(warnings),
        canonical_names={label: str(measure) for label, measure in parsed.items()},
    )
