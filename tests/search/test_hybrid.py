"""HybridSearcher: BM25 and dense fused in memory equal `llara search --fuse` of their runs."""
from __future__ import annotations

import numpy as np
import pytest

from llara_cli.data.runs import group_run, read_run
from llara_cli.errors import UsageError
from llara_cli.search.bm25 import Bm25Searcher
from llara_cli.search.dense import DenseSearcher
from llara_cli.search.hybrid import HybridSearcher, as_run_scores
from tests.search.service.conftest import ALL_QUERIES, write_search_runs

DEPTH = 5


@pytest.mark.java
def test_hybrid_searcher_equals_fusing_the_two_run_files(served_collection, tmp_path):
    write_search_runs(served_collection, tmp_path, DEPTH)
    hybrid = HybridSearcher(Bm25Searcher(served_collection["corpus"]), DenseSearcher(served_collection["index"],
                                                                                     dtype="fp32"), depth=DEPTH)
    found = hybrid.batch_search(list(ALL_QUERIES.values()), list(ALL_QUERIES))
    expected = group_run(read_run(tmp_path / "fused.trec"))
    assert as_run_scores({query_id: hits for query_id, hits in found.items() if hits}) == expected
    assert as_run_scores({"q1": hybrid.search(ALL_QUERIES["q1"], k=2)}) == {"q1": expected["q1"][:2]}
    hybrid.bm25.close()


@pytest.mark.java
def test_bm25_searcher_keeps_its_index_open_and_answers_as_batch_search(served_collection):
    searcher = Bm25Searcher(served_collection["corpus"])
    texts, ids = list(ALL_QUERIES.values()), list(ALL_QUERIES)
    batch = searcher.batch_search(texts, ids, k=3)
    assert {query_id: searcher.search(text, k=3) for query_id, text in zip(ids, texts)} == batch
    assert searcher._lucene is not None and searcher.search("   ", k=3) == []
    searcher.close()
    assert searcher._lucene is None and searcher.search(texts[0], k=3) == batch[ids[0]]  # reopens
    searcher.close()


def test_scores_pass_through_the_run_format_and_weights_are_checked():
    from llara_cli.data.runs import format_score

    scores = {"q": [("d", 0.12345649), ("e", 1 / 3), ("f", float(np.float32(0.95)))]}
    assert as_run_scores(scores) == {"q": [(doc_id, float(format_score(score))) for doc_id, score in scores["q"]]}
    assert as_run_scores(scores) == scores  # the run keeps every float exactly: nothing is rounded away
    with pytest.raises(UsageError):
        HybridSearcher(None, None, dense_weight=1.5)
    with pytest.raises(UsageError):
        HybridSearcher(None, None, depth=0)
