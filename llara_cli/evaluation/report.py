"""The result of an evaluation: plain data, JSON-serialisable through ``to_dict`` (rendering is the CLI's job)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from llara_cli.evaluation.coverage import Coverage
from llara_cli.evaluation.measures import PerQuery
from llara_cli.evaluation.significance import SIGNIFICANCE_LEVEL

EVALUATION_SCHEMA_VERSION = 1  # `llara evaluate --json` (docs/evaluation.md): bumped when a key changes meaning or goes
TIE_RULE = "trec_eval: score descending, then doc id descending, for every measure"


def _finite(value: float | None) -> float | None:
    """JSON has no NaN or infinity: those become null."""
    return value if value is not None and math.isfinite(value) else None


@dataclass(frozen=True)
class Comparison:
    """One run against the baseline on one measure (paired two-sided t-test over the judged queries)."""

    measure: str
    delta: float  # run aggregate - baseline aggregate
    p_value: float | None  # after the Bonferroni correction when one was asked for; None: no test possible
    raw_p_value: float | None
    significant: bool

    def to_dict(self) -> dict[str, object]:
        return {
            "delta": _finite(self.delta), "p_value": _finite(self.p_value),
            "raw_p_value": _finite(self.raw_p_value), "significant": self.significant,
        }


@dataclass(frozen=True)
class RunResult:
    """Everything measured for one run."""

    name: str
    aggregates: dict[str, float]
    per_query: PerQuery  # measure label -> query_id -> value, for every judged query
    coverage: Coverage
    recall_curve: dict[int, float]  # cutoff k -> R@k
    comparisons: dict[str, Comparison] = field(default_factory=dict)  # empty for the baseline

    def to_dict(self, per_query: bool = True) -> dict[str, object]:
        payload: dict[str, object] = {
            "aggregates": {label: _finite(value) for label, value in self.aggregates.items()},
            "coverage": self.coverage.to_dict(),
            "recall_curve": {str(cutoff): _finite(value) for cutoff, value in self.recall_curve.items()},
            "comparisons": {label: comparison.to_dict() for label, comparison in self.comparisons.items()},
        }
        if per_query:
            payload["per_query"] = {
                label: {query_id: _finite(value) for query_id, value in values.items()}
                for label, values in self.per_query.items()
            }
        return payload


@dataclass(frozen=True)
class EvaluationReport:
    """Runs evaluated on the same qrels with the same measures, optionally compared to a baseline run."""

    measures: tuple[str, ...]
    runs: dict[str, RunResult]
    judged_queries: int
    baseline: str | None = None
    alpha: float = SIGNIFICANCE_LEVEL
    bonferroni: bool = False
    comparisons_in_family: int = 0  # the Bonferroni factor: compared runs x measures
    warnings: tuple[str, ...] = ()
    canonical_names: dict[str, str] = field(default_factory=dict)  # label as typed -> ir_measures' own name

    def canonical(self, label: str) -> str:
        """The measure's canonical name (``MRR@10`` -> ``RR@10``), whatever the user's spelling."""
        return self.canonical_names.get(label, label)

    def to_document(self, *, qrels: dict[str, object], run_files: dict[str, dict[str, object]],
                    per_query: bool = True) -> dict[str, object]:
        """The versioned ``llara evaluate --json`` document: canonical measure keys, and what was read.

        ``qrels`` describes the qrels read (path, split, counts), ``run_files`` each run's file by run name.
        """
        from llara_cli import __version__

        def canonical_keys(mapping: dict[str, object]) -> dict[str, object]:
            return {self.canonical(label): value for label, value in mapping.items()}

        runs: dict[str, object] = {}
        for name, result in self.runs.items():
            payload = result.to_dict(per_query=per_query)
            for key in ("aggregates", "comparisons", "per_query"):
                if key in payload:
                    payload[key] = canonical_keys(payload[key])  # type: ignore[arg-type]
            runs[name] = {**run_files.get(name, {}), **payload}
        return {
            "schema_version": EVALUATION_SCHEMA_VERSION,
            "llara_version": __version__,
            "measures": [self.canonical(label) for label in self.measures],
            "requested_measures": {self.canonical(label): label for label in self.measures},
            "tie_rule": TIE_RULE,
            "qrels": {**qrels, "judged_queries": self.judged_queries},
            "baseline": self.baseline,
            "significance": {
                "test": "paired two-sided t-test", "alpha": self.alpha, "bonferroni": self.bonferroni,
                "comparisons_in_family": self.comparisons_in_family,
            },
            "warnings": list(self.warnings),
            "runs": runs,
        }

    def to_dict(self, per_query: bool = True) -> dict[str, object]:
        """A JSON-serialisable dict (non-finite numbers become null)."""
        return {
            "measures": list(self.measures),
            "judged_queries": self.judged_queries,
            "baseline": self.baseline,
            "significance": {
                "test": "paired two-sided t-test",
                "alpha": self.alpha,
                "bonferroni": self.bonferroni,
                "comparisons_in_family": self.comparisons_in_family,
            },
            "warnings": list(self.warnings),
            "runs": {name: run.to_dict(per_query=per_query) for name, run in self.runs.items()},
        }
