"""Hard negatives for corpus pairs from the model's own dense run: encode the corpus and the pseudo-queries with
the model about to be finetuned, rank the corpus for each pseudo-query, and mine as ``llara mine`` does.

The unsupervised path of ``llara finetune --pairs-from corpus`` (:mod:`llara_cli.data.corpus_pairs`): the
pseudo-query of document ``d`` has query id ``d`` and ``d`` as its positive, so the ordinary mining
(:func:`llara_cli.data.finetune.mine_negatives`: ranks ``skip+1..depth``, the score margins) applies unchanged.
The ranking is exact (inner products of the model's embeddings, blockwise), at the lengths the run trains with,
and the pseudo-queries are embedded with the query (EBAR) prompt, the side finetuning trains, whatever prompt the
model searches with (``query_prompt``): mined from the passage-prompt run of an ``ebae`` model, whose run ranks
the source document higher, the margin kept fewer pairs (Cranfield: 194 against 230) and the finetuned model
scored a little lower (nDCG@10 0.196 against 0.204; docs/results.md).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from llara_cli.core.prompts import QueryPrompt
from llara_cli.data.finetune import (
    MiningSettings,
    Passage,
    TrainingData,
    mine_negatives,
)

__all__ = ["mine_from_own_run", "rank_exactly"]

logger = logging.getLogger(__name__)

SCORE_BLOCK = 1024  # queries scored at once


def rank_exactly(query_embeddings: np.ndarray, passage_embeddings: np.ndarray, doc_ids: Sequence[str],
                 query_ids: Sequence[str], depth: int) -> dict[str, list[tuple[str, float]]]:
    """``{query_id: [(doc_id, score), ...]}`` best first, the top ``depth`` by inner product."""
    depth = min(depth, len(doc_ids))
    run: dict[str, list[tuple[str, float]]] = {}
    for start in range(0, len(query_ids), SCORE_BLOCK):
        scores = query_embeddings[start:start + SCORE_BLOCK] @ passage_embeddings.T  # (block, n_docs)
        top = np.argpartition(-scores, depth - 1, axis=1)[:, :depth]  # (block, depth), unordered
        for row, candidates in enumerate(top):
            ordered = candidates[np.argsort(-scores[row, candidates], kind="stable")]
            run[query_ids[start + row]] = [(doc_ids[index], float(scores[row, index])) for index in ordered]
    return run


def mine_from_own_run(data: TrainingData, model: str, corpus: str | Path, settings: MiningSettings, *,
                      query_max_length: int, passage_max_length: int, dtype: str = "auto", batch_size: int = 16,
                      trust_remote_code: bool = False,
                      on_progress: Callable[[str], None] | None = None) -> TrainingData:
    """``data`` (corpus pairs) with hard negatives mined from ``model``'s dense run of its queries over ``corpus``."""
    from llara_cli.data.corpus import read_corpus
    from llara_cli.encode.encoder import LlaraEncoder
    from llara_cli.runtime.precision import resolve_dtype

    documents = read_corpus(corpus)
    texts = {document.doc_id: document.text for document in documents}
    encoder = LlaraEncoder.load(model, dtype=resolve_dtype(dtype), trust_remote_code=trust_remote_code,
                                query_prompt=QueryPrompt.EBAR)  # the side being trained
    if on_progress is not None:
        on_progress(f"mining negatives from {model}'s own run: encoding {len(documents):,} documents and "
                    f"{len(data.examples):,} pseudo-queries")
    passages = encoder.encode_passages([document.text for document in documents], batch_size=batch_size,
                                       max_length=passage_max_length)  # (n_docs, dim)
    queries = encoder.encode_queries([example.query for example in data.examples], batch_size=batch_size,
                                     max_length=query_max_length)  # (n_queries, dim)
    query_ids = [example.query_id for example in data.examples]
    run = rank_exactly(queries, passages, [document.doc_id for document in documents], query_ids, settings.depth)
    positives = {example.query_id: [passage.doc_id for passage in example.positives] for example in data.examples}
    counts: dict[str, int] = {}
    negatives = mine_negatives(run, positives, settings, counts)
    examples = [example._replace(negatives=tuple(Passage(doc_id, texts[doc_id])
                                                 for doc_id in negatives.get(example.query_id, ())))
                for example in data.examples]
    mined = TrainingData(examples, source=f"{data.source} + {model}'s own run")
    positive_ranks = [next((rank for rank, (doc_id, _) in enumerate(run[query_id], start=1)
                            if doc_id in positives[query_id]), None) for query_id in query_ids]
    mined.stats = {**data.stats, "negatives": sum(len(example.negatives) for example in examples),
                   "queries_without_negatives": mined.without_negatives,
                   "positive_at_rank_1": sum(1 for rank in positive_ranks if rank == 1),
                   **(counts if settings.score_ceiling(0.0) is not None else {})}
    logger.info("own-run mining: %s", mined.stats)
    return mined
