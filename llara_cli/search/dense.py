"""Dense search end to end: encode queries with the index's own model and prompt, search, write a TREC run.

``index_dir`` is one index, several index shards (or a directory of them) searched one at a time
(:mod:`llara_cli.search.sharded`), or an external engine's index (:mod:`llara_cli.index.engines`).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from llara_cli.data.corpus import queries_for_search, warn_if_swapped
from llara_cli.data.runs import write_run
from llara_cli.encode.embedding_store import check_finite, same_model
from llara_cli.errors import UsageError
from llara_cli.index.integrity import check_weights_fingerprint
from llara_cli.model.fingerprint import weights_fingerprint
from llara_cli.runtime.dtypes import Dtype, dtype_of

if TYPE_CHECKING:
    from llara_cli.encode.encoder import LlaraEncoder

logger = logging.getLogger(__name__)

DEFAULT_K = 1000
DEFAULT_QUERY_BATCH_SIZE = 32
DENSE_RUN_TAG = "llara-dense"
SINGLE_QUERY_ID = "q"  # the id DenseSearcher.search gives its one query


@dataclass(frozen=True)
class DenseSearchJob:
    index_dir: Path | Sequence[Path]  # one index, several index shards, or a directory of shards
    queries: Path
    out_run: Path
    split: str | None = None
    model: str | None = None
    prompt_family: str | None = None
    k: int = DEFAULT_K
    batch_size: int = DEFAULT_QUERY_BATCH_SIZE
    max_length: int | None = None  # tokens per query; None: the query length the model was trained with
    dtype: str = "fp32"  # or auto: resolved once, by the searcher (runtime.precision.resolve_dtype)
    trust_remote_code: bool = False
    tag: str = DENSE_RUN_TAG
    dim: int | None = None  # query prefix dim; must equal the index's (encode.truncation)
    rescore_factor: int | None = None  # compact indexes: candidates per result rescored (search.rescoring)
    query_prompt: str | None = None  # ebar / ebae instead of the model's own (core.prompts.QueryPrompt)


def check_query_encoder(index_meta, model: str | None, prompt_family: str | None) -> tuple[str, str]:
    """The model and family to encode queries with: the index's own, or an explicit one that matches it."""
    recorded_model, recorded_family = index_meta.embedding.model, index_meta.embedding.prompt_family
    if model is not None and not same_model(recorded_model, model):
        raise UsageError(
            f"the index was built with model {recorded_model!r}, not {model!r}: queries must be encoded with the "
            "same model (omit --model to use the index's)"
        )
    if prompt_family is not None and prompt_family != recorded_family:
        raise UsageError(f"the index was built with the {recorded_family} prompt family, not {prompt_family}")
    return recorded_model, recorded_family


class DenseSearcher:
    """Search an index built by ``llara index`` (or several index shards) with text queries.

    Queries are encoded with the index's own model and prompt family (the model's query prompt: EBAR unless it
    chose ``ebae``, or ``query_prompt``), at the query length the model
    was trained with unless ``max_length`` says otherwise; one index is held in memory, shards are read one at a
    time per batch search and merged exactly (:mod:`llara_cli.search.sharded`)::

        searcher = DenseSearcher("index/scifact")
        hits = searcher.search("what does aspirin do to platelets", k=10)  # [(doc_id, score), ...] best first
    """

    def __init__(self, index: str | Path | Sequence[str | Path], *, model: str | None = None,
                 prompt_family: str | None = None, dtype: str = "fp32", max_length: int | None = None,
                 batch_size: int = DEFAULT_QUERY_BATCH_SIZE, trust_remote_code: bool = False,
                 dim: int | None = None, rescore_factor: int | None = None,
                 encoder: LlaraEncoder | None = None, query_prompt: str | None = None) -> None:
        """``encoder``: a loaded :class:`LlaraEncoder` to encode queries with (one model shared by several
        searchers, as Pyserini's searchers take a query encoder); it must be the index's model and prompt
        family, and ``model``/``dtype``/``trust_remote_code`` are then not used. ``index`` may also be an
        external engine's index directory (``llara index --engine milvus``, :mod:`llara_cli.index.engines`).
        ``dim``: cut queries to this prefix (the index's dim by default); ``rescore_factor``: candidates per
        result rescored with the float store of a compact index (:mod:`llara_cli.search.rescoring`);
        ``query_prompt``: ``ebar`` or ``ebae`` instead of the model's own (with ``model``, not ``encoder``)."""
        from llara_cli.core.batching import check_batch_size
        from llara_cli.index.engines import is_engine_dir, open_engine_index
        from llara_cli.index.faiss_index import load_index
        from llara_cli.search.rescoring import check_rescorable
        from llara_cli.search.sharded import resolve_index_shards

        check_batch_size(batch_size)
        paths = [index] if isinstance(index, (str, Path)) else list(index)
        self.engine = open_engine_index(paths[0]) if len(paths) == 1 and is_engine_dir(paths[0]) else None
        if self.engine is not None:  # vectors live in an external engine: searched there, not with faiss
            self.shard_dirs, self.shard_metas, self.index = [Path(paths[0])], [self.engine.meta], None
        else:
            self.shard_dirs, self.shard_metas = resolve_index_shards([Path(path) for path in paths])
            self.index = load_index(self.shard_dirs[0]) if len(self.shard_dirs) == 1 else None  # shards: per search
        self.meta = self.index.meta if self.index is not None else self.shard_metas[0]
        if encoder is None:
            encoder = self._load_encoder(model, prompt_family, dtype, trust_remote_code, query_prompt)
        elif query_prompt is not None:
            raise UsageError("query_prompt is the loaded encoder's own: load it with LlaraEncoder.load(query_prompt=...)")
        else:
            check_query_encoder(self.meta, encoder.name, encoder.config.prompt_family.value)
        check_weights_fingerprint(self.meta.embedding.extra, encoder.name, weights_fingerprint(encoder.name),
                                  self.shard_dirs[0])
        self.encoder = encoder
        self.dtype = dtype_of(encoder.model.dtype)  # what the queries are encoded in (auto resolved once, on load)
        self.query_dim = self._query_dim(dim, encoder.name)
        check_rescorable(self.shard_dirs, self.shard_metas, rescore_factor)
        self.rescore_factor = rescore_factor
        self.max_length = max_length
        self.batch_size = batch_size

    def _load_encoder(self, model: str | None, prompt_family: str | None, dtype: str,
                      trust_remote_code: bool, query_prompt: str | None) -> LlaraEncoder:
        from llara_cli.encode.encoder import LlaraEncoder
        from llara_cli.runtime.precision import resolve_dtype

        model, family = check_query_encoder(self.meta, model, prompt_family)
        return LlaraEncoder.load(model, dtype=resolve_dtype(dtype), prompt_family=family,
                                 trust_remote_code=trust_remote_code, query_prompt=query_prompt)

    def _query_dim(self, requested: int | None, model: str) -> int:
        """The dim queries are cut to: the index's (a prefix of the model's when the index was truncated)."""
        from llara_cli.encode.truncation import TRUNCATED_FROM_FIELD, resolve_query_dim, warn_if_not_trained_for

        embedding = self.meta.embedding
        query_dim = resolve_query_dim(requested, embedding.dim, self.encoder.dim,
                                      embedding.extra.get(TRUNCATED_FROM_FIELD), f"the index {self.shard_dirs[0]}")
        warn_if_not_trained_for(self.encoder.config, model, query_dim, self.encoder.dim)
        return query_dim

    @property
    def num_docs(self) -> int:
        return sum(shard.embedding.count for shard in self.shard_metas)

    def encode_queries(self, texts: Sequence[str], on_batch: Callable[[int], None] | None = None):
        """Query embeddings ``(n_queries, dim)`` float32, as the searcher scores them (cut to the index's dim)."""
        vectors = self.encoder.encode_queries(list(texts), batch_size=self.batch_size, max_length=self.max_length,
                                              on_batch=on_batch)  # (n_queries, encoder dim)
        if self.query_dim != vectors.shape[1]:
            from llara_cli.encode.truncation import truncate_vectors

            vectors = truncate_vectors(vectors, self.query_dim, self.meta.embedding.normalize)  # (n, query_dim)
        return vectors

    def release_model(self) -> None:
        """Drop the query encoder (its memory goes back before shards are read); ``search_vectors`` still works."""
        self.encoder = None

    def search_vectors(self, vectors, query_ids: Sequence[str], k: int = DEFAULT_K,
                       source: str = "query embeddings") -> dict[str, list[tuple[str, float]]]:
        """Search with query embeddings already computed: ``{query_id: [(doc_id, score), ...]}``, best first."""
        from llara_cli.search.faiss_search import search_index
        from llara_cli.search.sharded import search_index_shards

        check_finite(vectors, list(query_ids), f"{source} (overflow? try --dtype fp32)")
        if self.engine is not None:
            return self.engine.search(vectors, list(query_ids), k=k)
        if self.index is not None:
            return search_index(self.index, vectors, list(query_ids), k=k, rescore_factor=self.rescore_factor)
        return search_index_shards(self.shard_dirs, vectors, list(query_ids), k=k,
                                   rescore_factor=self.rescore_factor)

    def batch_search(self, texts: Sequence[str], query_ids: Sequence[str], k: int = DEFAULT_K,
                     on_batch: Callable[[int], None] | None = None) -> dict[str, list[tuple[str, float]]]:
        """``{query_id: [(doc_id, score), ...]}``, best first, ``k`` per query."""
        return self.search_vectors(self.encode_queries(texts, on_batch=on_batch), query_ids, k=k)

    def search(self, text: str, k: int = DEFAULT_K) -> list[tuple[str, float]]:
        """The top ``k`` ``(doc_id, score)`` of one query, best first."""
        return self.batch_search([text], [SINGLE_QUERY_ID], k=k)[SINGLE_QUERY_ID]


class DenseSearchSummary(NamedTuple):
    queries: int  # queries searched
    dtype: Dtype  # the dtype they were encoded in (``auto`` resolved)


def run_dense_search(job: DenseSearchJob, on_start: Callable[[int, int], None] | None = None,
                     on_progress: Callable[[int], None] | None = None) -> DenseSearchSummary:
    """Encode the queries (the model's query prompt), search the index (or its shards, one at a time), write the run;
    returns how many queries and in which dtype."""
    searcher = DenseSearcher(job.index_dir, model=job.model, prompt_family=job.prompt_family, dtype=job.dtype,
                             max_length=job.max_length, batch_size=job.batch_size,
                             trust_remote_code=job.trust_remote_code, dim=job.dim,
                             rescore_factor=job.rescore_factor, query_prompt=job.query_prompt)
    queries = queries_for_search(job.queries, job.split)
    warn_if_swapped(len(queries), searcher.num_docs, job.index_dir)
    if on_start is not None:
        on_start(len(queries), 0)
    vectors = searcher.encode_queries([query.text for query in queries], on_batch=on_progress)  # (n, dim)
    if searcher.index is None:
        searcher.release_model()  # free the model before the first shard is read
    results = searcher.search_vectors(vectors, [query.query_id for query in queries], k=job.k,
                                      source=f"query embeddings of {job.queries}")
    write_run(job.out_run, results, job.tag)
    return DenseSearchSummary(queries=len(queries), dtype=searcher.dtype)
