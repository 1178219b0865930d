from __future__ import annotations

import pytest
from scipy import stats

from llara_cli.evaluation.significance import bonferroni_correct, is_significant, paired_t_test


def test_paired_t_test_equals_scipy():
    run, baseline = [0.5, 0.25, 1.0, 0.0, 0.75], [0.25, 0.25, 0.5, 0.1, 0.5]
    assert paired_t_test(run, baseline) == pytest.approx(stats.ttest_rel(run, baseline).pvalue)


def test_degenerate_cases():
    assert paired_t_test([0.5, 0.25], [0.5, 0.25]) == 1.0
    assert paired_t_test([0.5], [0.25]) is None
    assert not is_significant(None)


def test_bonferroni_multiplies_and_caps():
    assert bonferroni_correct(0.01, 4) == pytest.approx(0.04)
    assert bonferroni_correct(0.4, 4) == 1.0
    assert bonferroni_correct(None, 4) is None


def test_constant_non_zero_difference_is_decided_without_scipy_noise():
    assert paired_t_test([0.5, 1.0, 0.3], [0.0, 0.5, -0.2]) == 0.0
