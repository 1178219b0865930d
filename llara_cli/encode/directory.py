"""Encoding a corpus or a query set into an embedding directory: sharded, chunked and resumable.

Records are split into ``shard_num`` contiguous shards; a shard is encoded in fixed chunks, each saved
atomically under ``chunks/`` as soon as it is done. A rerun after an interruption skips finished chunks;
since chunk boundaries and the length-sorted batches inside a chunk are fixed, the result is bit-identical
to an uninterrupted run. When every chunk is there they are merged into the final embedding set.
"""
from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llara_cli import __version__
from llara_cli.core.prompts import QueryPrompt, Side
from llara_cli.data.corpus import BEIR_CORPUS_FILE, BEIR_QUERIES_FILE, read_corpus, read_queries, resolve_beir_file
from llara_cli.encode.truncation import (
    TRUNCATED_FROM_FIELD,
    check_truncation_dim,
    truncate_vectors,
    warn_if_not_trained_for,
)
from llara_cli.errors import UsageError
from llara_cli.model.fingerprint import FINGERPRINT_KEY, weights_fingerprint
from llara_cli.storage.files import atomic_write, file_sha256, read_json, write_json
from llara_cli.storage.locks import LOCK_FILE, output_lock
from llara_cli.storage.outputs import TEMP_SUFFIX, check_own_directory, remove_leftovers

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 1024  # texts per saved chunk: the unit of resume
CHUNKS_DIR = "chunks"
STATE_FILE = "encode_state.json"
QUERY_PROMPT_FIELD = "query_prompt"  # meta.json of query embeddings laid out with another prompt than EBAR


@dataclass(frozen=True)
class EncodeJob:
    source: Path
    out_dir: Path
    side: Side
    batch_size: int
    max_length: int | None = None
    shard_id: int = 0
    shard_num: int = 1
    chunk_size: int = DEFAULT_CHUNK_SIZE
    overwrite: bool = False
    store_dtype: str = "fp32"  # embeddings.npy as float32, or float16 (half the disk; see embeddings.STORE_DTYPES)
    dim: int | None = None  # keep only this prefix of each embedding (encode.truncation); None: the model's dim


def shard_range(count: int, shard_id: int, shard_num: int) -> range:
    """Contiguous ``[start, end)`` of shard ``shard_id`` of ``shard_num``; shards in order cover everything once."""
    if shard_num < 1 or not 0 <= shard_id < shard_num:
        raise UsageError(f"--shard-id must be in [0, --shard-num); got {shard_id} of {shard_num}")
    return range(count * shard_id // shard_num, count * (shard_id + 1) // shard_num)


def read_records(source: Path, side: Side) -> tuple[list[str], list[str], Path]:
    """``(ids, texts, file)``: passages from a corpus, queries from a query file; both may be BEIR dirs."""
    if side is Side.PASSAGE:
        documents = read_corpus(source)
        return [document.doc_id for document in documents], [document.text for document in documents], \
            resolve_beir_file(source, BEIR_CORPUS_FILE)
    queries = read_queries(source)
    return [query.query_id for query in queries], [query.text for query in queries], \
        resolve_beir_file(source, BEIR_QUERIES_FILE)


def _check_resumable(state_path: Path, expected: dict) -> None:
    saved = read_json(state_path)
    differing = sorted(key for key in expected if saved.get(key) != expected[key])
    if differing:
        details = "; ".join(f"{key}: {saved.get(key)!r} -> {expected[key]!r}" for key in differing)
        raise UsageError(
            f"{state_path.parent} holds an unfinished encode with other settings ({details}); "
            "rerun with the same settings to resume, or pass --overwrite to start over"
        )


def encode_to_directory(job: EncodeJob, encoder, on_progress: Callable[[int], None] | None = None,
                        on_start: Callable[[int, int], None] | None = None):
    """Run ``job`` with a :class:`~llara_cli.encode.encoder.LlaraEncoder`; returns the saved embedding set's metadata.

    ``on_start(total, already_done)`` and ``on_progress(n_done)`` let a caller draw progress.
    """
    from llara_cli.encode.embedding_store import (
        EMBEDDINGS_FILE,
        IDS_FILE,
        META_FILE,
        STORE_DTYPES,
        EmbeddingMeta,
        check_finite,
        save_embeddings,
    )

    out_dir = job.out_dir
    if job.store_dtype not in STORE_DTYPES:
        raise UsageError(f"--store-dtype must be one of {', '.join(STORE_DTYPES)}, got {job.store_dtype!r}")
    check_own_directory(out_dir, (EMBEDDINGS_FILE, IDS_FILE, META_FILE, CHUNKS_DIR, STATE_FILE, LOCK_FILE),
                        "an llara embedding directory")
    if (out_dir / META_FILE).is_file() and not job.overwrite:
        raise UsageError(f"{out_dir} already holds finished embeddings; pass --overwrite to replace them")
    ids, texts, source_file = read_records(job.source, job.side)
    selected = shard_range(len(ids), job.shard_id, job.shard_num)
    ids, texts = ids[selected.start:selected.stop], texts[selected.start:selected.stop]
    max_length = job.max_length or encoder.max_length(job.side)
    dim = _stored_dim(job, encoder)
    extra = {"model_dtype": str(encoder.model.dtype).replace("torch.", ""),
             FINGERPRINT_KEY: weights_fingerprint(encoder.name)}
    if dim != encoder.dim:
        extra[TRUNCATED_FROM_FIELD] = encoder.dim
    if job.side is Side.QUERY and encoder.prompt_format.query_prompt is not QueryPrompt.EBAR:
        extra[QUERY_PROMPT_FIELD] = encoder.prompt_format.query_prompt.value  # queries laid out as passages
    meta = EmbeddingMeta(
        model=encoder.name, prompt_family=encoder.config.prompt_family.value, pooling=encoder.config.pooling.value,
        side=job.side.value, dim=dim, max_length=max_length, normalize=encoder.config.normalize,
        count=len(ids), source_sha256=file_sha256(source_file), shard_id=job.shard_id, shard_num=job.shard_num,
        dtype=STORE_DTYPES[job.store_dtype], llara_version=__version__, extra=extra,
    )
    state = {**meta.to_dict(), "chunk_size": job.chunk_size, "source": str(source_file)}
    state.pop("llara_version", None)
    with output_lock(out_dir):
        chunks_dir = out_dir / CHUNKS_DIR
        for directory in (out_dir, chunks_dir):  # temp files of a killed run (the lock says none is live)
            remove_leftovers(directory, f".*{TEMP_SUFFIX}")
        state_path = out_dir / STATE_FILE
        if job.overwrite:
            shutil.rmtree(chunks_dir, ignore_errors=True)
            state_path.unlink(missing_ok=True)
        if state_path.is_file():
            _check_resumable(state_path, state)
        else:
            write_json(state_path, state)
        chunk_starts = range(0, len(ids), job.chunk_size)
        done = [start for start in chunk_starts if _chunk_path(chunks_dir, start).is_file()]
        if on_start is not None:
            on_start(len(ids), sum(min(job.chunk_size, len(ids) - start) for start in done))
        if done:
            logger.info("resuming: %d of %d chunks already encoded in %s", len(done), len(chunk_starts), chunks_dir)
        for start in chunk_starts:
            path = _chunk_path(chunks_dir, start)
            if path.is_file():
                continue
            vectors = encoder.encode(texts[start:start + job.chunk_size], job.side, batch_size=job.batch_size,
                                     max_length=max_length, on_batch=on_progress)  # (chunk, encoder.dim)
            if dim != encoder.dim:
                vectors = truncate_vectors(vectors, dim, encoder.config.normalize)  # (chunk, dim)
            check_finite(vectors, ids[start:start + job.chunk_size],
                         f"embeddings of {source_file} from {encoder.name} (overflow? try --dtype fp32)")
            with atomic_write(path, "wb") as handle:
                np.save(handle, vectors, allow_pickle=False)
        vectors = np.concatenate([_load_chunk(_chunk_path(chunks_dir, start), min(job.chunk_size, len(ids) - start),
                                              dim) for start in chunk_starts]) \
            if len(ids) else np.zeros((0, dim), dtype=np.float32)
        if encoder.truncated_texts:
            logger.warning("%d texts were longer than --max-length %d and were truncated",
                           encoder.truncated_texts, max_length)
        meta = save_embeddings(out_dir, ids, vectors, meta, overwrite=job.overwrite, store_dtype=job.store_dtype)
        shutil.rmtree(chunks_dir, ignore_errors=True)
        state_path.unlink(missing_ok=True)
    return meta


def _stored_dim(job: EncodeJob, encoder) -> int:
    """The dim to store: the model's, or the checked ``job.dim`` prefix (warning once if not trained for it)."""
    if job.dim is None or job.dim == encoder.dim:
        return encoder.dim
    check_truncation_dim(job.dim, encoder.dim, f"model {encoder.name}")
    warn_if_not_trained_for(encoder.config, encoder.name, job.dim, encoder.dim)
    return job.dim


def _chunk_path(chunks_dir: Path, start: int) -> Path:
    return chunks_dir / f"chunk-{start:012d}.npy"


def _load_chunk(path: Path, rows: int, dim: int) -> np.ndarray:
    """A saved chunk, ``(rows, dim)``; a truncated or foreign one raises naming it."""
    try:
        vectors = np.load(path, allow_pickle=False)  # (rows, dim)
    except (ValueError, OSError, EOFError) as error:
        raise UsageError(f"{path}: unreadable encode chunk ({error}); delete it and rerun to encode it again") from None
    if vectors.shape != (rows, dim):
        raise UsageError(f"{path}: encode chunk of shape {vectors.shape}, expected ({rows}, {dim}); "
                         "delete it and rerun to encode it again")
    return vectors
