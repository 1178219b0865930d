"""The fusion weight tuned on pseudo-queries (their own documents as the only judgements)."""
from __future__ import annotations

from llara_cli.search.label_free_fusion import label_free_dense_weight, pseudo_qrels


def test_pseudo_qrels_judge_each_pseudo_query_its_own_document():
    assert [(qrel.query_id, qrel.doc_id, qrel.relevance) for qrel in pseudo_qrels({"a": "a", "b": "b"})] == [
        ("a", "a", 1), ("b", "b", 1)]


def test_a_dense_run_that_finds_the_own_documents_gets_weight_and_one_that_does_not_gets_none():
    own = {f"d{index}": f"d{index}" for index in range(30)}
    others = [f"x{index}" for index in range(5)]
    # BM25 ranks the own document third; the good dense run ranks it first, the useless one never returns it
    bm25 = {query: [(others[0], 3.0), (others[1], 2.5), (doc, 2.4), (others[2], 1.0)] for query, doc in own.items()}
    good = {query: [(doc, 0.9), (others[3], 0.5), (others[0], 0.1)] for query, doc in own.items()}
    useless = {query: [(others[4], 0.9), (others[3], 0.5)] for query in own}
    assert label_free_dense_weight(bm25, good, own).dense_weight > 0
    assert label_free_dense_weight(bm25, useless, own).dense_weight == 0
