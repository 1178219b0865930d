"""evaluate_runs against ir_measures and scipy called directly on tiny inline TREC fixtures."""
from __future__ import annotations

import json

import ir_measures
import pytest
from scipy import stats

from llara_cli.data.qrels import read_qrels
from llara_cli.data.runs import read_run
from llara_cli.errors import UsageError
from llara_cli.evaluation import evaluate_runs

# Query 2 judges document "2": Cranfield-style overlapping ids must not be dropped.
QRELS = """\
1 0 d1 2
1 0 d2 1
1 0 d3 0
2 0 2 1
2 0 d4 1
3 0 d5 1
"""
RUN_A = """\
1 Q0 d1 1 3.0 a
1 Q0 d9 2 2.0 a
1 Q0 d2 3 1.0 a
2 Q0 2 1 5.0 a
2 Q0 d7 2 4.0 a
3 Q0 d8 1 1.0 a
3 Q0 d5 2 0.5 a
"""
RUN_B = """\
1 Q0 d9 1 3.0 b
1 Q0 d8 2 2.5 b
1 Q0 d1 3 2.0 b
2 Q0 d7 1 1.0 b
2 Q0 d4 2 0.5 b
4 Q0 x 1 1.0 b
"""
RUN_C = """\
1 Q0 d2 1 3.0 c
1 Q0 d1 2 2.0 c
2 Q0 d4 1 1.0 c
3 Q0 d6 1 1.0 c
3 Q0 d5 2 0.9 c
"""
MEASURES = ("nDCG@10", "MRR@10", "R@100", "MAP")


@pytest.fixture()
def files(tmp_path):
    paths = {}
    for name, text in {"qrels": QRELS, "a": RUN_A, "b": RUN_B, "c": RUN_C}.items():
        paths[name] = tmp_path / f"{name}.txt"
        paths[name].write_text(text)
    return paths


def _evaluate(files, names=("a", "b"), **kwargs):
    runs = {name: read_run(files[name]) for name in names}
    return evaluate_runs(read_qrels(files["qrels"]), runs, MEASURES, **kwargs)


def test_aggregates_equal_ir_measures(files):
    report = _evaluate(files)
    measures = [ir_measures.parse_measure(name) for name in MEASURES]
    for name, text in (("a", RUN_A), ("b", RUN_B)):
        expected = ir_measures.calc_aggregate(
            measures, list(ir_measures.read_trec_qrels(QRELS)), list(ir_measures.read_trec_run(text))
        )
        for label, measure in zip(MEASURES, measures):
            assert report.runs[name].aggregates[label] == pytest.approx(expected[measure], abs=1e-12)


def test_document_with_the_query_id_counts(files):
    report = _evaluate(files)
    assert report.runs["a"].per_query["MRR@10"]["2"] == 1.0


def test_missing_queries_score_zero_and_unjudged_are_reported(files):
    report = _evaluate(files)
    coverage = report.runs["b"].coverage
    assert report.runs["b"].per_query["MRR@10"]["3"] == 0.0
    assert coverage.judged_queries == 3
    assert coverage.evaluated_queries == 2
    assert coverage.missing_queries == ("3",)
    assert coverage.unjudged_queries == ("4",)
    # top-10 of queries 1 and 2: d9, d8, d1, d7, d4 -> d9, d8, d7 unjudged
    assert coverage.unjudged_at_10 == pytest.approx(3 / 5)
    assert len(report.warnings) == 2
    assert any("1 of the 3 judged queries" in warning for warning in report.warnings)
    assert any("1 of its 3 queries have no judgements" in warning and "(4)" in warning for warning in report.warnings)


def test_p_value_equals_scipy_on_hand_computed_values(files):
    report = _evaluate(files, baseline="a")
    rr_a = [1.0, 1.0, 1 / 2]  # queries 1, 2, 3
    rr_b = [1 / 3, 1 / 2, 0.0]  # query 3 missing from run b -> 0
    comparison = report.runs["b"].comparisons["MRR@10"]
    expected = stats.ttest_rel(rr_b, rr_a).pvalue
    assert comparison.raw_p_value == pytest.approx(expected)
    assert comparison.p_value == comparison.raw_p_value
    assert comparison.delta == pytest.approx(sum(rr_b) / 3 - sum(rr_a) / 3)
    assert comparison.significant == (expected < 0.05)
    assert report.runs["a"].comparisons == {}


def test_bonferroni_multiplies_by_compared_runs_times_measures(files):
    plain = _evaluate(files, names=("a", "b", "c"), baseline="a")
    corrected = _evaluate(files, names=("a", "b", "c"), baseline="a", bonferroni=True)
    assert corrected.comparisons_in_family == 2 * len(MEASURES)
    for name in ("b", "c"):
        for label in MEASURES:
            raw = plain.runs[name].comparisons[label].p_value
            assert corrected.runs[name].comparisons[label].p_value == pytest.approx(min(1.0, raw * 8))


def test_zero_overlap_is_an_error(files, tmp_path):
    other = tmp_path / "other.trec"
    other.write_text("q7 Q0 d1 1 1.0 x\nq8 Q0 d1 1 1.0 x\n")
    with pytest.raises(UsageError, match=r"run other: none of its 2 query ids appear in the qrels \(run: q7, q8"):
        evaluate_runs(read_qrels(files["qrels"]), {"other": read_run(other)})


def test_bad_measure_and_unknown_baseline(files):
    with pytest.raises(UsageError, match="'nDGC@10' is not an ir_measures measure"):
        evaluate_runs(read_qrels(files["qrels"]), {"a": read_run(files["a"])}, ["nDGC@10"])
    with pytest.raises(UsageError, match="positive integer"):
        evaluate_runs(read_qrels(files["qrels"]), {"a": read_run(files["a"])}, ["P@0"])
    with pytest.raises(UsageError, match="baseline 'z' is not one of the runs: a"):
        evaluate_runs(read_qrels(files["qrels"]), {"a": read_run(files["a"])}, baseline="z")


def test_report_is_json_serialisable(files):
    payload = json.loads(json.dumps(_evaluate(files, baseline="a").to_dict()))
    assert payload["baseline"] == "a"
    assert set(payload["runs"]) == {"a", "b"}
    assert payload["runs"]["b"]["coverage"]["unjudged_queries"] == ["4"]
    assert payload["runs"]["b"]["per_query"]["MRR@10"]["3"] == 0.0
    assert set(payload["runs"]["a"]["recall_curve"]) >= {"1", "10", "100", "1000"}
