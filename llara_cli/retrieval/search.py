"""Dense search end to end: encode queries with the index's own model and prompt, search, write a TREC run.

``index_dir`` is one index, or several index shards (or a directory of them) searched one at a time
(:mod:`llara_cli.retrieval.sharded_search`).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from llara_cli.data.corpus import queries_for_search, warn_if_swapped
from llara_cli.data.runs import write_run
from llara_cli.retrieval.embeddings import check_finite, same_model
from llara_cli.errors import UsageError

logger = logging.getLogger(__name__)

DEFAULT_K = 1000
DEFAULT_QUERY_BATCH_SIZE = 32
DENSE_RUN_TAG = "llara-dense"


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
    dtype: str = "fp32"  # or auto (core.precision)
    trust_remote_code: bool = False
    tag: str = DENSE_RUN_TAG


def check_query_encoder(index_meta, model: str | None, prompt_family: str | None) -> tuple[str, str]:  # noqa: ANN001
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


def run_dense_search(job: DenseSearchJob, on_start: Callable[[int, int], None] | None = None,
                     on_progress: Callable[[int], None] | None = None) -> int:
    """Encode the queries (EBAR side), search the index (or its shards, one at a time), write the run;
    returns the number of queries."""
    from llara_cli.core.encoder import LlaraEncoder
    from llara_cli.core.precision import resolve_dtype
    from llara_cli.retrieval.dense_search import search_index
    from llara_cli.retrieval.index import load_index
    from llara_cli.retrieval.sharded_search import resolve_index_shards, search_index_shards

    paths = [job.index_dir] if isinstance(job.index_dir, (str, Path)) else list(job.index_dir)
    shard_dirs, shard_metas = resolve_index_shards(paths)
    index = load_index(shard_dirs[0]) if len(shard_dirs) == 1 else None  # shards are loaded when searched
    meta = index.meta if index is not None else shard_metas[0]
    model, family = check_query_encoder(meta, job.model, job.prompt_family)
    queries = queries_for_search(job.queries, job.split)
    warn_if_swapped(len(queries), sum(shard.embedding.count for shard in shard_metas), job.index_dir)
    encoder = LlaraEncoder.load(model, dtype=resolve_dtype(job.dtype), prompt_family=family,
                                trust_remote_code=job.trust_remote_code)
    if encoder.dim != meta.embedding.dim:
        raise UsageError(
            f"model {model} gives {encoder.dim}-dimensional embeddings; the index holds {meta.embedding.dim}")
    if on_start is not None:
        on_start(len(queries), 0)
    vectors = encoder.encode_queries([query.text for query in queries], batch_size=job.batch_size,
                                     max_length=job.max_length, on_batch=on_progress)
    query_ids = [query.query_id for query in queries]
    check_finite(vectors, query_ids, f"query embeddings of {job.queries} (overflow? try --dtype fp32)")
    if index is not None:
        results = search_index(index, vectors, query_ids, k=job.k)
    else:
        del encoder  # free the model before the first shard is read
        results = search_index_shards(shard_dirs, vectors, query_ids, k=job.k)
    write_run(job.out_run, results, job.tag)
    return len(queries)
