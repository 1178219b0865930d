"""Exact search over an index in shards: one shard in memory at a time, top-k merged by ``(-score, doc_id)``.

A corpus too large for one process (MS MARCO x 4096-d float32 is 144 GB) is encoded in embedding shards and
indexed one shard at a time (``llara index SHARD --partial``). Searching loads a shard, searches every query,
keeps each query's best ``k`` so far and frees the shard, so peak memory is about the largest shard plus the
``(n_queries, k)`` candidates. The global top-``k`` is within the union of the per-shard top-``k`` lists, so
over flat shards the merged run is the run of one flat index over all vectors (ties at the k-th score
resolved by doc_id, as the TREC writer orders them). Tevatron's ``faiss_retriever`` searches shards the same way.
"""
from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llara_cli.encode.embedding_store import COMPATIBILITY_FIELDS, describe_differences
from llara_cli.encode.shards import expand_shard_dirs
from llara_cli.errors import UsageError
from llara_cli.index.faiss_index import IndexMeta, load_index, load_index_meta
from llara_cli.search.faiss_search import (
    DEFAULT_TOP_K,
    MISSING_ID,
    check_queries,
    search_rows,
)

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)

SHARD_AGREEMENT_FIELDS = (*COMPATIBILITY_FIELDS, "source_sha256")  # index shards must be of one corpus
NO_DOC = ""  # doc id of an empty candidate slot (sorts after every real candidate: its score is -inf)


def resolve_index_shards(paths: Sequence[str | Path]) -> tuple[list[Path], list[IndexMeta]]:
    """The index shard directories (a parent directory stands for its shards) and their metas, checked.

    The shards must agree on model, prompt, pooling, dim, normalization and corpus, and together hold every
    embedding shard of the corpus exactly once (``corpus_shards`` in their meta), so no document is missed
    or counted twice. A single index is returned as is.
    """
    if not paths:
        raise UsageError("no index given")
    directories = expand_shard_dirs([Path(path) for path in paths])
    if len({directory.resolve() for directory in directories}) != len(directories):
        raise UsageError("the same index directory is given twice")
    metas = [load_index_meta(directory) for directory in directories]
    if len(directories) > 1:
        _check_shards_agree(directories, metas)
    elif metas[0].corpus_shards is not None:
        shards, shard_num = metas[0].covered_shards()
        logger.warning("%s is a partial index (embedding shard(s) %s of %d): the other shards' documents are "
                       "not searched", directories[0], ", ".join(map(str, shards)), shard_num)
    return directories, metas


def _check_shards_agree(directories: Sequence[Path], metas: Sequence[IndexMeta]) -> None:
    first_payload = metas[0].embedding.to_dict()
    for directory, meta in zip(directories[1:], metas[1:]):
        differences = describe_differences(first_payload, meta.embedding.to_dict(), SHARD_AGREEMENT_FIELDS)
        if differences:
            raise UsageError(f"index shards {directories[0]} and {directory} differ: {'; '.join(differences)}")
    for directory, meta in zip(directories, metas):
        if meta.corpus_shards is None:
            raise UsageError(f"{directory} holds the whole corpus: search it alone, or give only index shards "
                             "(built with `llara index --partial`)")
    owner: dict[int, Path] = {}
    shard_nums = {meta.covered_shards()[1] for meta in metas}
    if len(shard_nums) != 1:
        raise UsageError(f"index shards split the corpus differently (into {sorted(shard_nums)} embedding shards)")
    shard_num = shard_nums.pop()
    for directory, meta in zip(directories, metas):
        for shard in meta.covered_shards()[0]:
            if shard in owner:
                raise UsageError(f"{owner[shard]} and {directory} both hold embedding shard {shard} of {shard_num}")
            owner[shard] = directory
    missing = sorted(set(range(shard_num)) - set(owner))
    if missing:
        raise UsageError(
            f"the index shards miss embedding shard(s) {', '.join(map(str, missing))} of {shard_num}: "
            "documents would be silently absent from the run"
        )


def _doc_ids_at(doc_ids: Sequence[str], rows: np.ndarray) -> np.ndarray:
    """The ids of ``rows (n_queries, k)`` as a str array of the same shape; MISSING_ID gives NO_DOC."""
    import numpy as np

    named = [NO_DOC if row == MISSING_ID else doc_ids[row] for row in rows.ravel().tolist()]
    return np.asarray(named, dtype=np.str_).reshape(rows.shape)


def _merge_top_k(
    best_scores: np.ndarray, best_docs: np.ndarray, scores: np.ndarray, docs: np.ndarray, k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` of two candidate sets per query by ``(-score, doc_id)``; all arrays ``(n_queries, *)``."""
    import numpy as np

    all_scores = np.concatenate([best_scores, scores], axis=1)  # (n_queries, k_before + k_shard)
    all_docs = np.concatenate([best_docs, docs], axis=1)  # unicode widths promote
    order = np.lexsort((all_docs, -all_scores), axis=1)[:, :k]  # primary key: -score; then doc_id
    return np.take_along_axis(all_scores, order, axis=1), np.take_along_axis(all_docs, order, axis=1)


def search_index_shards(
    directories: Sequence[Path],
    query_vectors: np.ndarray,
    query_ids: Sequence[str],
    k: int = DEFAULT_TOP_K,
    *,
    on_shard: Callable[[Path], None] | None = None,
    **search_options: Any,
) -> dict[str, list[tuple[str, float]]]:
    """Search the index shards one at a time and merge: ``{query_id: [(doc_id, score), ...]}``, best first.

    Call :func:`resolve_index_shards` first (it checks the shards belong together). ``on_shard(path)`` is
    called before each shard is loaded; ``search_options`` (``batch_size``, ``ef_search``, ``nprobe``) apply
    to every shard as in :func:`~llara_cli.search.faiss_search.search_index`.
    """
    import numpy as np

    n_queries = len(query_ids)
    best_scores = np.empty((n_queries, 0), dtype=np.float32)  # (n_queries, <= k)
    best_docs = np.empty((n_queries, 0), dtype=np.str_)  # (n_queries, <= k)
    for directory in directories:
        if on_shard is not None:
            on_shard(directory)
        index = load_index(directory)
        vectors = check_queries(index, query_vectors, query_ids)
        scores, rows = search_rows(index, vectors, k, **search_options)
        missing = rows == MISSING_ID
        scores[missing] = -np.inf
        best_scores, best_docs = _merge_top_k(best_scores, best_docs, scores, _doc_ids_at(index.doc_ids, rows), k)
        del index, scores, rows
        gc.collect()  # hand the shard's memory back before the next one is read
        logger.info("searched index shard %s", directory)
    return {
        query_id: [(doc_id, score) for doc_id, score in zip(docs, scores) if doc_id != NO_DOC]
        for query_id, docs, scores in zip(query_ids, best_docs.tolist(), best_scores.tolist())
    }
