"""A small judged known-item collection built offline from the Python standard library's own docstrings.

Every public module, class and function docstring of the stdlib source (:mod:`llara_cli.demo.stdlib_docstrings`)
becomes a document: ``_id`` = dotted qualified name (``json.dumps``), ``title`` = ``""``, ``text`` = the
docstring without its summary sentence. A seeded sample of the summary sentences become the queries, each
judged relevant (score 1) to the rest of its own docstring; the other docstrings are distractors. The output
is a BEIR directory, byte-identical across runs on the same Python version::

    llara demo-collection --out data/stdlib --max-documents 3000 --num-queries 300
"""
from __future__ import annotations

import json
import logging
import os
import platform
import random
import shutil
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from llara_cli.data.corpus import BEIR_CORPUS_FILE, BEIR_QUERIES_FILE
from llara_cli.data.qrels import DEFAULT_BEIR_SPLIT
from llara_cli.demo.stdlib_docstrings import (
    Docstring,
    DocstringPool,
    collect_docstrings,
    is_query_candidate,
    match_key,
    stdlib_source_dir,
)
from llara_cli.errors import LlaraError, UsageError
from llara_cli.storage.files import atomic_write, file_sha256, read_json, write_json

logger = logging.getLogger(__name__)

DEFAULT_MAX_DOCUMENTS = 3000
DEFAULT_N_QUERIES = 300
DEFAULT_SEED = 13

RELEVANCE = 1

QRELS_DIR = "qrels"
QRELS_HEADER = "query-id\tcorpus-id\tscore\n"
STATS_FILE = "collection.json"
README_FILE = "README.md"
COLLECTION_KIND = "llara-stdlib-docstrings"
QUERY_ID_PREFIX = "q"
DIRECTORY_MODE = 0o755


@dataclass(frozen=True)
class CollectionStats:
    """What :func:`build_stdlib_collection` wrote; saved as ``collection.json``."""

    kind: str
    python_version: str
    split: str
    seed: int
    max_documents: int
    n_queries_requested: int
    n_documents: int
    n_queries: int
    n_qrels: int
    n_source_files: int
    n_unparsable_files: int
    n_docstrings: int
    n_pool_documents: int
    n_query_candidates: int
    dropped: dict[str, int] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # relative path -> sha256

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------------------------
# Sampling


def select_collection(
    pool: DocstringPool, max_documents: int, n_queries: int, seed: int,
) -> tuple[list[Docstring], list[Docstring], Counter[str], int]:
    """Pick the judged docstrings and the distractors with one seeded generator.

    Returns ``(documents sorted by id, judged docstrings in query order, query drop counts, n candidates)``.
    A candidate whose summary is shared by another docstring, or appears inside any other document, would have
    more than one right answer and is never a query.
    """
    rng = random.Random(seed)
    dropped: Counter[str] = Counter()
    candidates: list[Docstring] = []
    for docstring in pool.documents:
        if not is_query_candidate(docstring):
            dropped["query_unusable_summary"] += 1
        elif pool.summary_counts[match_key(docstring.summary)] > 1:
            dropped["query_ambiguous_summary"] += 1
        else:
            candidates.append(docstring)
    # All bodies joined once (each wrapped in spaces, so matches fall on word boundaries): checking a summary
    # against every other document is then one search.
    keys = [f" {match_key(docstring.body)} " for docstring in pool.documents]
    haystack = "\n".join(keys)
    spans: dict[str, tuple[int, int]] = {}
    offset = 0
    for docstring, key in zip(pool.documents, keys):
        spans[docstring.doc_id] = (offset, offset + len(key))
        offset += len(key) + 1

    judged: list[Docstring] = []
    for docstring in rng.sample(candidates, len(candidates)):
        if len(judged) == n_queries:
            break
        if _appears_elsewhere(f" {match_key(docstring.summary)} ", haystack, spans[docstring.doc_id]):
            dropped["query_in_other_document"] += 1
            continue
        judged.append(docstring)

    judged_ids = {docstring.doc_id for docstring in judged}
    others = [docstring for docstring in pool.documents if docstring.doc_id not in judged_ids]
    n_distractors = min(len(others), max_documents - len(judged))
    distractors = rng.sample(others, n_distractors)
    documents = sorted([*judged, *distractors], key=lambda docstring: docstring.doc_id)
    return documents, judged, dropped, len(candidates)


def _appears_elsewhere(needle: str, haystack: str, own_span: tuple[int, int]) -> bool:
    own_start, own_end = own_span
    position = haystack.find(needle)
    while position != -1:
        if not own_start <= position < own_end:
            return True
        position = haystack.find(needle, position + 1)
    return False


# ---------------------------------------------------------------------------------------------------------
# Writing


def _query_ids(n_queries: int) -> list[str]:
    width = len(str(n_queries))
    return [f"{QUERY_ID_PREFIX}{index:0{width}d}" for index in range(1, n_queries + 1)]


def _write_jsonl(path: Path, records: list[dict[str, str]]) -> None:
    with atomic_write(path) as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False))
            handle.write("\n")


def _readme(stats: CollectionStats) -> str:
    return f"""# Python standard library docstrings: a known-item retrieval collection

Generated by `llara demo-collection` (module `llara_cli.demo.collection`)
from the source of the Python {stats.python_version} standard library, parsed with `ast` (nothing imported).
Do not edit by hand; rebuild with the same Python version and parameters to get identical bytes.

- Parameters: max_documents={stats.max_documents}, queries={stats.n_queries_requested}, seed={stats.seed},
  split={stats.split}.
- `{BEIR_CORPUS_FILE}`: {stats.n_documents} documents. `_id` = dotted qualified name (`json.dumps`),
  `title` = "" (the name would give the answer away), `text` = the docstring without its summary sentence,
  whitespace-normalised.
- `{BEIR_QUERIES_FILE}`: {stats.n_queries} queries, each the summary sentence of one docstring.
- `{QRELS_DIR}/{stats.split}.tsv`: {stats.n_qrels} judgements, exactly one per query (score {RELEVANCE}): the
  rest of the same docstring. Every other document is an unjudged distractor.
- `{STATS_FILE}`: counts, filters applied, sha256 of every file.

Task: known-item retrieval (summary sentence -> docstring body); report MRR@10 and Recall@k.

Licence: the docstrings are part of CPython, distributed under the
Python Software Foundation License Version 2 (https://docs.python.org/3/license.html).
Copyright (c) 2001 Python Software Foundation; All Rights Reserved.
"""


def _check_parameters(max_documents: int, n_queries: int, split: str) -> None:
    if n_queries < 1:
        raise UsageError(f"number of queries must be at least 1, got {n_queries}")
    if max_documents < n_queries:
        raise UsageError(f"max_documents ({max_documents}) must be at least the number of queries ({n_queries})")
    if not split or os.sep in split or split.startswith("."):
        raise UsageError(f"split {split!r} must be a plain name such as 'test'")


def _check_target(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir}: exists and is not a directory")
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return
    if not overwrite:
        raise UsageError(f"{out_dir}: directory is not empty (pass overwrite=True / --overwrite to replace it)")
    stats_path = out_dir / STATS_FILE
    previous = read_json(stats_path) if stats_path.is_file() else None
    if not isinstance(previous, dict) or previous.get("kind") != COLLECTION_KIND:
        raise UsageError(f"{out_dir}: not a collection built by this tool; refusing to replace it, remove it first")


def _move_into_place(staging: Path, out_dir: Path) -> None:
    """Replace ``out_dir`` by ``staging``; the old tree is only deleted once the new one is in place."""
    retired: Path | None = None
    if out_dir.exists():
        retired = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old.", dir=out_dir.parent))
        os.replace(out_dir, retired / out_dir.name)
    try:
        os.replace(staging, out_dir)
    except OSError:
        if retired is not None:
            os.replace(retired / out_dir.name, out_dir)
        raise
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)


def build_stdlib_collection(
    out_dir: str | Path,
    max_documents: int = DEFAULT_MAX_DOCUMENTS,
    seed: int = DEFAULT_SEED,
    split: str = DEFAULT_BEIR_SPLIT,
    n_queries: int = DEFAULT_N_QUERIES,
    *,
    overwrite: bool = False,
    modules: Sequence[str] | None = None,
) -> CollectionStats:
    """Build the stdlib docstring collection as a BEIR directory at ``out_dir`` and return its statistics.

    ``max_documents`` caps the corpus (judged documents + sampled distractors); fewer queries than asked are
    written if the stdlib has too few usable summaries. ``modules`` restricts the walk to those top-level
    modules (for quick tests). A non-empty ``out_dir`` is replaced only with ``overwrite=True`` and only if it
    holds a collection built by this function.
    """
    _check_parameters(max_documents, n_queries, split)
    out_dir = Path(out_dir)
    _check_target(out_dir, overwrite)

    pool = collect_docstrings(stdlib_source_dir(), modules)
    documents, judged, query_dropped, n_candidates = select_collection(pool, max_documents, n_queries, seed)
    if not judged:
        raise LlaraError("no usable docstrings found in the standard library source; is it installed?")
    if len(judged) < n_queries:
        logger.warning("only %d usable queries (asked for %d)", len(judged), n_queries)
    query_ids = _query_ids(len(judged))

    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    except OSError as error:
        raise LlaraError(f"cannot write {out_dir}: {error.strerror or error}") from None
    try:
        _write_jsonl(staging / BEIR_CORPUS_FILE,
                     [{"_id": doc.doc_id, "title": "", "text": doc.body} for doc in documents])
        _write_jsonl(staging / BEIR_QUERIES_FILE,
                     [{"_id": query_id, "text": doc.summary} for query_id, doc in zip(query_ids, judged)])
        qrels_path = staging / QRELS_DIR / f"{split}.tsv"
        with atomic_write(qrels_path) as handle:
            handle.write(QRELS_HEADER)
            for query_id, doc in zip(query_ids, judged):
                handle.write(f"{query_id}\t{doc.doc_id}\t{RELEVANCE}\n")
        written = [BEIR_CORPUS_FILE, BEIR_QUERIES_FILE, f"{QRELS_DIR}/{split}.tsv"]
        stats = CollectionStats(
            kind=COLLECTION_KIND,
            python_version=platform.python_version(),
            split=split,
            seed=seed,
            max_documents=max_documents,
            n_queries_requested=n_queries,
            n_documents=len(documents),
            n_queries=len(judged),
            n_qrels=len(judged),
            n_source_files=pool.n_source_files,
            n_unparsable_files=pool.n_unparsable_files,
            n_docstrings=pool.n_docstrings,
            n_pool_documents=len(pool.documents),
            n_query_candidates=n_candidates,
            dropped=dict(sorted((pool.dropped + query_dropped).items())),
            files={name: file_sha256(staging / name) for name in written},
        )
        with atomic_write(staging / README_FILE) as handle:
            handle.write(_readme(stats))
        write_json(staging / STATS_FILE, stats.to_dict())
        staging.chmod(DIRECTORY_MODE)  # mkdtemp creates it private; the collection is ordinary data
        _move_into_place(staging, out_dir)
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise LlaraError(f"cannot write {out_dir}: {error.strerror or error}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("wrote %s: %d documents, %d queries", out_dir, stats.n_documents, stats.n_queries)
    return stats
