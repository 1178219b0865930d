"""Every measure ranks tied documents as trec_eval does (pytrec_eval is trec_eval), query by query.

The runs are random with many exact ties (scores on a coarse grid), written with ``write_run`` and read back, so
the file format takes part: what trec_eval would read from the file is what llara evaluates.
"""
from __future__ import annotations

import random

import pytest

from llara_cli.data.qrels import Qrel
from llara_cli.data.runs import ScoredDoc, read_run, write_run
from llara_cli.evaluation.evaluator import evaluate_runs
from llara_cli.evaluation.measures import trec_eval_ranking

pytrec_eval = pytest.importorskip("pytrec_eval")

# llara label -> pytrec_eval measure
MEASURES = {"nDCG@10": "ndcg_cut_10", "MAP": "map", "R@100": "recall_100", "P@5": "P_5", "RR": "recip_rank"}


def _collection(seed: int, grid: int) -> tuple[dict, dict]:
    rng = random.Random(seed)
    qrels, run = {}, {}
    for query in range(12):
        query_id = f"q{query}"
        docs = [f"d{rng.randrange(300)}" for _ in range(150)]
        qrels[query_id] = {doc_id: rng.choice([0, 1, 1, 2]) for doc_id in rng.sample(docs, 6)}
        run[query_id] = {doc_id: round(rng.random() * grid) / grid for doc_id in docs}
    return qrels, run


@pytest.mark.parametrize("seed,grid", [(1, 3), (2, 10), (3, 1000)])
def test_every_measure_equals_trec_eval_per_query_on_runs_with_ties(tmp_path, seed, grid):
    qrels, run = _collection(seed, grid)
    write_run(tmp_path / "run.trec", {query_id: list(scores.items()) for query_id, scores in run.items()})
    scored_docs = read_run(tmp_path / "run.trec")
    as_read = {}
    for scored in scored_docs:
        as_read.setdefault(scored.query_id, {})[scored.doc_id] = scored.score
    assert as_read == run  # the file holds the scores exactly
    expected = pytrec_eval.RelevanceEvaluator(qrels, set(MEASURES.values())).evaluate(as_read)
    report = evaluate_runs([Qrel(q, d, r) for q, judged in qrels.items() for d, r in judged.items()],
                           {"run": scored_docs}, measures=[*MEASURES, "RR@10"])
    per_query = report.runs["run"].per_query
    for label, trec_name in MEASURES.items():
        for query_id in qrels:
            assert per_query[label][query_id] == pytest.approx(expected[query_id][trec_name], abs=1e-12), (label, query_id)
    for query_id in qrels:  # RR@10 is RR where the first relevant document is in the top 10, else 0
        reciprocal = expected[query_id]["recip_rank"]
        assert per_query["RR@10"][query_id] == pytest.approx(reciprocal if reciprocal >= 0.1 else 0.0, abs=1e-12)


def test_rr_and_ndcg_rank_one_tie_the_same_way():
    # d1 and d2 tie; trec_eval ranks d2 first (doc id descending): the relevant d1 is second for both measures
    report = evaluate_runs([Qrel("q", "d1", 1)], {"run": [ScoredDoc("q", "d1", 0.9), ScoredDoc("q", "d2", 0.9)]},
                           measures=["RR@10", "nDCG@10"])
    aggregates = report.runs["run"].aggregates
    assert aggregates["RR@10"] == pytest.approx(0.5)
    assert aggregates["nDCG@10"] == pytest.approx(1 / 1.584962500721156)  # 1 / log2(3)
    assert trec_eval_ranking({"d1": 0.9, "d2": 0.9, "d0": 1.0}) == ["d0", "d2", "d1"]


def test_a_written_run_keeps_scores_that_differ_below_six_decimals_apart(tmp_path):
    scores = [0.95000001, 0.95000002, 0.9500000300000001]
    write_run(tmp_path / "run.trec", {"q": [(f"d{index}", score) for index, score in enumerate(scores)]})
    written = sorted(scored.score for scored in read_run(tmp_path / "run.trec"))
    assert written == sorted(scores)
    lines = (tmp_path / "run.trec").read_text().splitlines()
    assert [line.split()[2] for line in lines] == ["d2", "d1", "d0"]  # file order is score order
