"""Evaluation of TREC runs with ir_measures: measures, coverage, paired significance tests, plots.

Heavy libraries (ir_measures, scipy, matplotlib) are imported only when a function needs them.
"""
from __future__ import annotations

from llara_cli.evaluation.coverage import Coverage
from llara_cli.evaluation.evaluator import RECALL_CURVE_CUTOFFS, evaluate_runs
from llara_cli.evaluation.measures import DEFAULT_MEASURES, parse_measures, split_measure_names
from llara_cli.evaluation.plots import plot_report
from llara_cli.evaluation.report import Comparison, EvaluationReport, RunResult
from llara_cli.evaluation.significance import SIGNIFICANCE_LEVEL, bonferroni_correct, paired_t_test

__all__ = [
    "DEFAULT_MEASURES", "RECALL_CURVE_CUTOFFS", "SIGNIFICANCE_LEVEL",
    "Comparison", "Coverage", "EvaluationReport", "RunResult",
    "bonferroni_correct", "evaluate_runs", "paired_t_test", "parse_measures", "plot_report", "split_measure_names",
]
