"""``HybridSearcher``: BM25 and dense search fused in memory, as ``llara search --fuse bm25.trec dense.trec``
fuses their run files (Pyserini's ``HybridSearcher`` in llara's terms).

Each side retrieves ``depth`` documents; their scores pass through the TREC run's score format
(:func:`llara_cli.data.runs.format_score`), so the fusion sees exactly what ``llara search --fuse`` reads back
from the two runs, and the fused lists equal that
command's run at ``--k depth`` (the robust BM25-anchored weight by default, or a tuned one:
:mod:`llara_cli.search.anchored_fusion`).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

from llara_cli.data.runs import format_score
from llara_cli.errors import UsageError
from llara_cli.search.anchored_fusion import ROBUST_DENSE_WEIGHT, anchored_fusion, anchored_weights
from llara_cli.search.fusion import FUSION_DEPTH

logger = logging.getLogger(__name__)

Results = dict[str, list[tuple[str, float]]]
SINGLE_QUERY_ID = "q"
HYBRID_RUN_TAG = "llara-robust"


def as_run_scores(results: Results) -> Results:
    """Scores as a TREC run stores them, the precision ``llara search --fuse`` fuses."""
    return {query_id: [(doc_id, float(format_score(score))) for doc_id, score in hits]
            for query_id, hits in results.items()}


def fuse_hybrid(bm25_results: Results, dense_results: Results, dense_weight: float, depth: int) -> Results:
    """The BM25-anchored fusion of one batch of BM25 and dense results, at run precision."""
    return anchored_fusion([as_run_scores(bm25_results), as_run_scores(dense_results)], dense_weight, depth=depth)


class HybridSearcher:
    """BM25 anchored, dense reordering its near-ties::

        hybrid = HybridSearcher(Bm25Searcher("data/scifact"), DenseSearcher("index/scifact"))
        hits = hybrid.search("what does aspirin do to platelets", k=10)  # [(doc_id, score), ...] best first
    """

    def __init__(self, bm25, dense, *, dense_weight: float = ROBUST_DENSE_WEIGHT,
                 depth: int = FUSION_DEPTH) -> None:
        anchored_weights(dense_weight, 2)  # checks the weight lies in [0, 1]
        if depth < 1:
            raise UsageError(f"the fusion depth must be at least 1, got {depth}")
        self.bm25, self.dense, self.dense_weight, self.depth = bm25, dense, float(dense_weight), depth

    def batch_search(self, texts: Sequence[str], query_ids: Sequence[str], k: int | None = None) -> Results:
        """``{query_id: [(doc_id, score), ...]}``, best first: the first ``k`` (default ``depth``) fused hits."""
        k = self.depth if k is None else k
        if k < 1:
            raise UsageError(f"k must be positive, got {k}")
        bm25_results = self.bm25.batch_search(texts, query_ids, k=self.depth)
        dense_results = self.dense.batch_search(texts, query_ids, k=self.depth)
        fused = fuse_hybrid(bm25_results, dense_results, self.dense_weight, self.depth)
        return {query_id: fused.get(query_id, [])[:k] for query_id in query_ids}

    def search(self, text: str, k: int | None = None) -> list[tuple[str, float]]:
        return self.batch_search([text], [SINGLE_QUERY_ID], k=k)[SINGLE_QUERY_ID]
