"""Whether to whiten an index, and to what dimension, chosen without any label.

Whitening (:mod:`llara_cli.index.whitening`) helped some collections and hurt others by 0.1 nDCG@10 (issue #32),
so it cannot be a blind default. The signal used here needs no qrels: *pseudo-queries* the corpus provides
(a document's title, or a random crop of it: :mod:`llara_cli.data.corpus_pairs`), embedded with the index's
model, should find their own document. Each candidate (no whitening, then each dimension) is scored by the
mean reciprocal rank (at 10) of the source document among all passages, exact search; the best wins, and
whitening must beat the raw embeddings by :data:`MIN_GAIN` to be chosen. The corpus's anisotropy (mean pairwise
cosine of a passage sample) is reported beside it: a diagnostic, not the decision.

The pseudo-query's own document is in the index, so a crop finds lexical and topical twins of itself: the signal
favours what BM25 would also find. How often the choice matches the labelled best is measured in
``benchmarks/own_corpus.py``.
"""
from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from llara_cli.errors import UsageError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["DEFAULT_WHITENING_CANDIDATES", "MIN_GAIN", "WhiteningChoice", "anisotropy", "choose_whitening",
           "self_retrieval_mrr"]

logger = logging.getLogger(__name__)

DEFAULT_WHITENING_CANDIDATES = (128, 192, 256, 384)  # dims tried besides no whitening (those below the embedding's)
MIN_GAIN = 0.005  # whitening must raise the pseudo-query MRR@10 by this much to be chosen
MRR_DEPTH = 10
ANISOTROPY_SAMPLE = 1000
RAW = "none"


@dataclass(frozen=True)
class WhiteningChoice:
    """The chosen dimension (None: no whitening), each candidate's pseudo-query MRR@10, the anisotropy."""

    dim: int | None
    scores: dict[str, float] = field(default_factory=dict)  # "none" or the dim -> MRR@10
    anisotropy: float = 0.0
    pseudo_queries: int = 0

    def describe(self) -> str:
        tried = ", ".join(f"{name} {score:.3f}" for name, score in self.scores.items())
        chosen = f"whiten to {self.dim}" if self.dim else "no whitening"
        return (f"{chosen} (pseudo-query MRR@10 over {self.pseudo_queries} corpus pseudo-queries: {tried}; "
                f"anisotropy {self.anisotropy:.2f})")


def anisotropy(vectors: np.ndarray, sample: int = ANISOTROPY_SAMPLE, seed: int = 0) -> float:
    """Mean cosine between distinct vectors of a sample of ``vectors (n, dim)``: near 0 isotropic, near 1 not."""
    import numpy as np

    rows = np.asarray(vectors, dtype=np.float32)
    if len(rows) > sample:
        rows = rows[np.sort(np.random.default_rng(seed).choice(len(rows), sample, replace=False))]
    unit = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)  # (m, dim)
    cosines = unit @ unit.T  # (m, m)
    m = len(unit)
    return float((cosines.sum() - np.trace(cosines)) / max(m * (m - 1), 1))


def self_retrieval_mrr(queries: np.ndarray, passages: np.ndarray, positive_rows: Sequence[int],
                       depth: int = MRR_DEPTH) -> float:
    """Mean reciprocal rank (0 beyond ``depth``) of each query's own passage (row ``positive_rows[i]``)."""
    import numpy as np

    scores = np.asarray(queries, dtype=np.float32) @ np.asarray(passages, dtype=np.float32).T  # (m, n)
    own = scores[np.arange(len(positive_rows)), np.asarray(positive_rows)]  # (m,)
    ranks = 1 + (scores > own[:, None]).sum(axis=1)  # (m,) ties count in the query's favour
    return float(np.where(ranks <= depth, 1.0 / ranks, 0.0).mean())


def choose_whitening(passages: np.ndarray, queries: np.ndarray, positive_rows: Sequence[int], *,
                     candidates: Sequence[int] = DEFAULT_WHITENING_CANDIDATES, min_gain: float = MIN_GAIN,
                     seed: int = 0) -> WhiteningChoice:
    """Pick no whitening or one of ``candidates`` by pseudo-query MRR@10 (see the module docstring).

    ``passages (n, dim)`` are the corpus's embeddings, ``queries (m, dim)`` the pseudo-queries', and
    ``positive_rows[i]`` the row of query ``i``'s own passage. Candidates not below ``dim`` or ``n`` are skipped.
    """
    from llara_cli.index.whitening import apply_whitening, fit_whitening

    if len(queries) == 0 or len(queries) != len(positive_rows):
        raise UsageError("choosing the whitening needs pseudo-queries, one own passage each")
    n, dim = passages.shape
    scores = {RAW: self_retrieval_mrr(queries, passages, positive_rows)}
    for whiten in candidates:
        if not 1 <= whiten < min(dim, n):
            continue
        transform = fit_whitening(passages, whiten)
        scores[str(whiten)] = self_retrieval_mrr(apply_whitening(transform, queries),
                                                 apply_whitening(transform, passages), positive_rows)
    best = max((name for name in scores if name != RAW), key=lambda name: scores[name], default=None)
    chosen = int(best) if best is not None and scores[best] >= scores[RAW] + min_gain else None
    choice = WhiteningChoice(chosen, scores, anisotropy(passages, seed=seed), len(queries))
    logger.info("%s", choice.describe())
    return choice


def pseudo_query_sample(corpus, doc_ids: Sequence[str], count: int = 200, seed: int = 0):
    """``(texts, positive_rows)`` of up to ``count`` corpus pseudo-queries (title or crop) whose documents are
    among ``doc_ids`` (the index's rows)."""
    from llara_cli.data.corpus_pairs import corpus_pairs

    rows = {doc_id: row for row, doc_id in enumerate(doc_ids)}
    examples = [example for example in corpus_pairs(corpus, seed=seed).examples if example.query_id in rows]
    if not examples:
        raise UsageError(f"{corpus}: no pseudo-query matches a document of the index (another corpus?)")
    chosen = sorted(random.Random(seed).sample(range(len(examples)), min(count, len(examples))))
    return [examples[index].query for index in chosen], [rows[examples[index].query_id] for index in chosen]


def choose_index_whitening(embedding_dirs: Sequence[str | Path], corpus: str | Path, *, count: int = 200,
                           seed: int = 0, candidates: Sequence[int] = DEFAULT_WHITENING_CANDIDATES,
                           dtype: str = "auto") -> WhiteningChoice:
    """:func:`choose_whitening` for the embeddings of ``llara encode`` (``embedding_dirs``, all shards of one
    corpus): ``count`` pseudo-queries of ``corpus`` embedded with the embeddings' model (its query prompt and length)."""
    import numpy as np

    from llara_cli.encode.embedding_store import load_embeddings
    from llara_cli.encode.encoder import LlaraEncoder
    from llara_cli.encode.shards import expand_shard_dirs
    from llara_cli.runtime.precision import resolve_dtype

    sets = [load_embeddings(directory) for directory in expand_shard_dirs([Path(d) for d in embedding_dirs])]
    sets.sort(key=lambda embedding_set: embedding_set.meta.shard_id)
    doc_ids = [doc_id for embedding_set in sets for doc_id in embedding_set.ids]
    passages = np.concatenate([np.asarray(embedding_set.vectors, dtype=np.float32) for embedding_set in sets])
    texts, rows = pseudo_query_sample(corpus, doc_ids, count=count, seed=seed)
    encoder = LlaraEncoder.load(sets[0].meta.model, dtype=resolve_dtype(dtype),
                                prompt_family=sets[0].meta.prompt_family)
    queries = encoder.encode_queries(texts)  # (m, dim)
    return choose_whitening(passages, queries, rows, candidates=candidates, seed=seed)
