"""Evaluation of TREC runs with ir_measures: measures, coverage, paired significance tests, plots.

Heavy libraries (ir_measures, scipy, matplotlib) are imported only when a function needs them.
"""
from __future__ import annotations

from llara_cli._lazy import lazy_exports

_EXPORTS = {
    "Coverage": "llara_cli.evaluation.coverage",
    "RECALL_CURVE_CUTOFFS": "llara_cli.evaluation.evaluator",
    "evaluate_runs": "llara_cli.evaluation.evaluator",
    "DEFAULT_MEASURES": "llara_cli.evaluation.measures",
    "parse_measures": "llara_cli.evaluation.measures",
    "split_measure_names": "llara_cli.evaluation.measures",
    "plot_report": "llara_cli.evaluation.plots",
    "Comparison": "llara_cli.evaluation.report",
    "EvaluationReport": "llara_cli.evaluation.report",
    "RunResult": "llara_cli.evaluation.report",
    "SIGNIFICANCE_LEVEL": "llara_cli.evaluation.significance",
    "bonferroni_correct": "llara_cli.evaluation.significance",
    "paired_t_test": "llara_cli.evaluation.significance",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
