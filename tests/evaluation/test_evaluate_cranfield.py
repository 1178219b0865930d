"""One real collection: Cranfield qrels (overlapping query and document ids), read through its name."""
from __future__ import annotations

from pathlib import Path

import ir_measures
import pytest

from llara_cli.data.collections import resolve_qrels
from llara_cli.data.qrels import read_qrels
from llara_cli.data.runs import ScoredDoc
from llara_cli.evaluation import evaluate_runs

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

pytestmark = [
    pytest.mark.shared_data,
    pytest.mark.skipif(not (SHARED_DATA / "cranfield").is_dir(), reason=f"{SHARED_DATA}/cranfield is absent"),
]


def test_perfect_run_on_cranfield(monkeypatch):
    monkeypatch.setenv("LLARA_DATA", str(SHARED_DATA))
    qrels = read_qrels(resolve_qrels("cranfield"))
    # A run returning each query's judged documents by relevance: every query judged, ids overlapping.
    run = [ScoredDoc(qrel.query_id, qrel.doc_id, float(qrel.relevance)) for qrel in qrels]
    report = evaluate_runs(qrels, {"oracle": run}, ["nDCG@10", "R@1000"])
    result = report.runs["oracle"]
    assert report.judged_queries == 225
    assert result.coverage.missing_queries == () and result.coverage.unjudged_queries == ()
    assert result.aggregates["nDCG@10"] == pytest.approx(1.0)
    assert result.aggregates["R@1000"] == pytest.approx(1.0)
    expected = ir_measures.calc_aggregate([ir_measures.nDCG @ 10], qrels_dict(qrels), run_dict(run))
    assert result.aggregates["nDCG@10"] == pytest.approx(expected[ir_measures.nDCG @ 10])


def qrels_dict(qrels):
    judged = {}
    for qrel in qrels:
        judged.setdefault(qrel.query_id, {})[qrel.doc_id] = qrel.relevance
    return judged


def run_dict(run):
    scored = {}
    for doc in run:
        scored.setdefault(doc.query_id, {})[doc.doc_id] = doc.score
    return scored
