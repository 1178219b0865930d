"""The BM25-anchored fusion's dense weight chosen without labels: tuned on the corpus's own pseudo-queries.

:func:`llara_cli.search.anchored_fusion.tune_dense_weight` picks the weight on labelled tuning queries. A corpus
without labels still provides queries with a known answer: a document's title or a crop of it
(:mod:`llara_cli.data.corpus_pairs`), whose answer is the document itself. :func:`label_free_dense_weight` runs the
same tuning (grid, ties to the smaller weight, significance against BM25 alone) with those *pseudo-qrels*.
Pseudo-queries are lexical by construction (a crop is a span of its own document), so this signal leans to BM25;
``ROBUST_DENSE_WEIGHT`` (0.2) remains the default that needs nothing at all.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from llara_cli.data.qrels import Qrel
from llara_cli.search.anchored_fusion import (
    DENSE_WEIGHT_GRID,
    TunedWeight,
    tune_dense_weight,
)
from llara_cli.search.fusion import FUSION_DEPTH, Results

__all__ = ["label_free_dense_weight", "pseudo_qrels"]


def pseudo_qrels(own_documents: Mapping[str, str]) -> list[Qrel]:
    """One judgement per pseudo-query: ``{query_id: doc_id}`` of the document it came from."""
    return [Qrel(query_id, doc_id, 1) for query_id, doc_id in own_documents.items()]


def label_free_dense_weight(bm25_run: Results, dense_run: Results, own_documents: Mapping[str, str],
                            grid: Sequence[float] = DENSE_WEIGHT_GRID, depth: int = FUSION_DEPTH) -> TunedWeight:
    """The dense weight of ``anchored_fusion([bm25_run, dense_run], w)`` tuned on pseudo-queries: both runs are of
    the pseudo-queries, ``own_documents`` maps each to its own document."""
    return tune_dense_weight([bm25_run, dense_run], pseudo_qrels(own_documents), grid=grid, depth=depth)
