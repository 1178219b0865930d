"""Paired significance tests between two runs' per-query values, with an optional Bonferroni correction."""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

SIGNIFICANCE_LEVEL = 0.05
MIN_PAIRS = 2  # a t-test needs at least two paired observations
EQUAL_TOLERANCE = 1e-12  # differences closer than this are the same number (float noise of the measures)


def paired_t_test(values: Sequence[float], baseline_values: Sequence[float]) -> float | None:
    """Two-sided paired t-test p-value (``scipy.stats.ttest_rel``) of ``values`` against ``baseline_values``.

    Degenerate samples, where every difference is the same number, are decided without scipy (whose answer
    there is float noise): all differences 0 give p = 1.0, a constant non-zero difference p = 0.0 (the
    t statistic is infinite). Fewer than two pairs give None (no test possible).
    """
    from scipy import stats

    if len(values) != len(baseline_values):
        raise ValueError(f"paired samples differ in length: {len(values)} vs {len(baseline_values)}")
    if len(values) < MIN_PAIRS:
        return None
    differences = [value - baseline for value, baseline in zip(values, baseline_values)]
    if max(differences) - min(differences) <= EQUAL_TOLERANCE:
        return 1.0 if abs(differences[0]) <= EQUAL_TOLERANCE else 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p_value = float(stats.ttest_rel(values, baseline_values).pvalue)
    return None if math.isnan(p_value) else p_value


def bonferroni_correct(p_value: float | None, comparisons: int) -> float | None:
    """Multiply ``p_value`` by the number of comparisons in the family, capped at 1.0."""
    if p_value is None:
        return None
    return min(1.0, p_value * max(comparisons, 1))


def is_significant(p_value: float | None, alpha: float = SIGNIFICANCE_LEVEL) -> bool:
    """``p_value < alpha``; no test (None) is never significant."""
    return p_value is not None and p_value < alpha
