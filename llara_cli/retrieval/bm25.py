"""Lucene BM25 through Anserini, called directly over pyjnius (no pyserini import, fast start).

An index is built once per corpus and reused: its ``llara_bm25.json`` manifest records the corpus
fingerprint (size, mtime, sha256), and a changed corpus is re-indexed. Analysis is Anserini's default
English analyzer (Porter stemming, Lucene's English stop words), the same as ``pyserini.search.lucene``,
and queries go through Anserini's bag-of-words query generator, so no query syntax is parsed: ``?``,
``*``, quotes, brackets or ``AND`` in a query are plain text.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import logging
import math
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from llara_cli.data.corpus import (
    BEIR_CORPUS_FILE, check_unique_ids, iter_documents, queries_for_search, resolve_beir_file, warn_if_swapped,
)
from llara_cli.storage.files import read_json, write_json
from llara_cli.storage.locks import process_alive
from llara_cli.data.records import Query
from llara_cli.data.runs import write_run
from llara_cli.errors import LlaraError, UsageError
from llara_cli.core.models import llara_home
from llara_cli.retrieval.java import anserini_version, java_error_message, start_jvm

logger = logging.getLogger(__name__)

Results = dict[str, list[tuple[str, float]]]  # {query_id: [(doc_id, score), ...]} best first

DEFAULT_K = 1000
MAX_K = 2**31 - 1  # Lucene takes the number of hits as a Java int
BUILD_DIR_INFIX = ".build-"  # work directories: .<index name>.build-<pid>-<random>
DEFAULT_K1 = 0.9
DEFAULT_B = 0.4
DEFAULT_BM25_TAG = "bm25"
MANIFEST_FILE = "llara_bm25.json"
MANIFEST_KIND = "llara-bm25"
MANIFEST_FORMAT = 1
LOCAL_CACHE_DIR = ".llara"  # beside the corpus
CACHE_SUBDIR = "bm25"  # under $LLARA_HOME
INDEX_DIR_PREFIX = "bm25-"
PATH_DIGEST_CHARS = 16
HASH_CHUNK_BYTES = 1 << 20
COLLECTION_SHARD_NAME = "docs-{shard:03d}.jsonl"  # Anserini indexes one collection file per thread
LUCENE_SEGMENTS_PREFIX = "segments_"
ANY_WRITE_BITS = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
ANSERINI_COLLECTION = "JsonCollection"
ANSERINI_GENERATOR = "DefaultLuceneDocumentGenerator"
ANSERINI_ANALYZER = "DefaultEnglishAnalyzer (Porter stemming, English stop words)"
ANSERINI_INDEX_OPTIONS = ("-storePositions", "-storeDocvectors")  # recorded in the manifest; raw text not stored
INDEXER_CLASS = "io.anserini.index.IndexCollection"
INDEXER_ARGS_CLASS = "io.anserini.index.IndexCollection$Args"
QUERY_GENERATOR_CLASS = "io.anserini.search.query.BagOfWordsQueryGenerator"
SEARCH_COLLECTION_CLASS = "io.anserini.search.SearchCollection"
SCORED_DOCS_CLASS = "io.anserini.search.ScoredDocs"
TIES_ADJUSTER_CLASS = "io.anserini.rerank.lib.ScoreTiesAdjusterReranker"
CONTENTS_FIELD = "contents"  # Anserini's Constants.CONTENTS
FS_DIRECTORY_CLASS = "org.apache.lucene.store.FSDirectory"
DIRECTORY_READER_CLASS = "org.apache.lucene.index.DirectoryReader"
INDEX_READER_CLASS = "org.apache.lucene.index.IndexReader"
INDEX_SEARCHER_CLASS = "org.apache.lucene.search.IndexSearcher"
BM25_SIMILARITY_CLASS = "org.apache.lucene.search.similarities.BM25Similarity"
JAVA_FILE_CLASS = "java.io.File"
INDEXER_COUNTERS = ("indexed", "empty", "unindexable", "skipped", "errors")


def default_threads() -> int:
    return os.cpu_count() or 1



def resolve_corpus_file(corpus_path: str | Path) -> Path:
    """The absolute corpus file a path stands for (a BEIR directory stands for its ``corpus.jsonl``)."""
    corpus_file = resolve_beir_file(corpus_path, BEIR_CORPUS_FILE)
    if not corpus_file.is_file():
        raise UsageError(f"{corpus_path}: no such corpus file or BEIR directory")
    return corpus_file.resolve()


def default_index_dirs(corpus_path: str | Path) -> list[Path]:
    """Where an index of this corpus is cached, in order of preference.

    Beside the corpus (``<corpus dir>/.llara/bm25-<name>``), then ``$LLARA_HOME/bm25/bm25-<name>-<digest>``
    with a digest of the corpus path, for corpora in read-only directories. Whether a cached index is
    current is decided by its manifest, so locating it never reads the corpus.
    """
    corpus_file = resolve_corpus_file(corpus_path)
    name = INDEX_DIR_PREFIX + corpus_file.name.split(".")[0]
    digest = hashlib.sha256(str(corpus_file).encode("utf-8")).hexdigest()[:PATH_DIGEST_CHARS]
    return [corpus_file.parent / LOCAL_CACHE_DIR / name, llara_home() / CACHE_SUBDIR / f"{name}-{digest}"]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint_corpus(corpus_file: Path) -> dict[str, Any]:
    """``{path, size, mtime_ns, sha256}`` of a corpus file."""
    info = corpus_file.stat()
    return {"path": str(corpus_file), "size": info.st_size, "mtime_ns": info.st_mtime_ns,
            "sha256": _sha256(corpus_file)}


def read_manifest(index_dir: str | Path) -> dict[str, Any] | None:
    """The llara manifest of a BM25 index, or None when the directory has none (or an unreadable one)."""
    path = Path(index_dir) / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        manifest = read_json(path)
    except LlaraError:
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("kind") == MANIFEST_KIND else None


def _is_current(index_dir: Path, corpus_file: Path) -> bool:
    """True when ``index_dir`` holds a complete llara index of this exact corpus, by this Anserini version.

    Same size and mtime is trusted; a different mtime with the same size (a copy, a touch) is
    settled by the sha256.
    """
    manifest = read_manifest(index_dir)
    if manifest is None or manifest.get("format") != MANIFEST_FORMAT:
        return False
    if manifest.get("anserini_version") != anserini_version() or not _has_lucene_segments(index_dir):
        return False
    recorded = manifest.get("corpus") or {}
    info = corpus_file.stat()
    if recorded.get("size") != info.st_size:
        return False
    return recorded.get("mtime_ns") == info.st_mtime_ns or recorded.get("sha256") == _sha256(corpus_file)


def _has_lucene_segments(index_dir: Path) -> bool:
    return index_dir.is_dir() and any(path.name.startswith(LUCENE_SEGMENTS_PREFIX) for path in index_dir.iterdir())


def _may_write_under(directory: Path) -> bool:
    """Whether an index may be created under ``directory`` (created if missing).

    A directory nobody may write to (no write bit at all) counts as read-only even for root, so shared
    read-only data is never written to.
    """
    existing = directory
    while not existing.exists():
        existing = existing.parent
    mode = existing.stat().st_mode
    return existing.is_dir() and bool(mode & ANY_WRITE_BITS) and os.access(existing, os.W_OK | os.X_OK)


def _write_json_collection(corpus_file: Path, collection_dir: Path, shards: int) -> int:
    """Write the corpus as Pyserini JsonCollection files (``{"id", "contents"}``); return the document count."""
    collection_dir.mkdir(parents=True)
    seen: set[str] = set()
    count = 0
    with ExitStack() as stack:
        handles = [
            stack.enter_context(open(collection_dir / COLLECTION_SHARD_NAME.format(shard=shard), "w", encoding="utf-8"))
            for shard in range(shards)
        ]
        for document in iter_documents(corpus_file):
            if document.doc_id in seen:
                raise UsageError(f"{corpus_file}: duplicate document id {document.doc_id}")
            seen.add(document.doc_id)
            record = {"id": document.doc_id, "contents": document.text}
            handles[count % shards].write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    if not count:
        raise UsageError(f"{corpus_file}: corpus is empty")
    return count


def _run_indexer(collection_dir: Path, index_dir: Path, threads: int) -> dict[str, int]:
    """Run Anserini's IndexCollection in this process; return its counters."""
    autoclass = start_jvm()
    from jnius import JavaException

    args = autoclass(INDEXER_ARGS_CLASS)()
    args.collectionClass = ANSERINI_COLLECTION
    args.generatorClass = ANSERINI_GENERATOR
    args.input = str(collection_dir)
    args.index = str(index_dir)
    args.threads = threads
    args.storePositions = True
    args.storeDocvectors = True
    # Stored fields hold only the id: every hit loads its stored document (Anserini's ScoredDocs), and
    # storing the raw text too makes search several times slower. llara reads texts from the corpus.
    args.storeRaw = False
    args.quiet = True
    try:
        indexer = autoclass(INDEXER_CLASS)(args)
        indexer.run()
    except JavaException as error:
        message = java_error_message(error)
        raise LlaraError(f"Anserini could not build the BM25 index in {index_dir}: {message}") from None
    counters = indexer.getCounters()
    return {name: int(getattr(counters, name).get()) for name in INDEXER_COUNTERS}


def _check_replaceable(index_dir: Path) -> None:
    """Refuse to replace anything but a missing path, an empty directory or a llara BM25 index."""
    if not index_dir.exists():
        return
    if not index_dir.is_dir():
        raise UsageError(f"{index_dir} is a file, not an index directory")
    if read_manifest(index_dir) is None and any(index_dir.iterdir()):
        raise UsageError(f"{index_dir} is not empty and is not a llara BM25 index: choose another index directory")


def _remove_stale_builds(index_dir: Path) -> None:
    """Delete the work directories that builds of ``index_dir`` killed before their cleanup left behind."""
    prefix = f".{index_dir.name}{BUILD_DIR_INFIX}"
    for entry in index_dir.parent.glob(f"{prefix}*"):
        owner = entry.name[len(prefix):].split("-", 1)[0]
        if entry.is_dir() and not (owner.isdigit() and process_alive(int(owner))):
            logger.info("removing %s, left by an interrupted BM25 build", entry)
            shutil.rmtree(entry, ignore_errors=True)


def _build(corpus_file: Path, index_dir: Path, threads: int) -> None:
    created_parent = not index_dir.parent.exists()
    try:
        index_dir.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_builds(index_dir)
        work_dir = Path(tempfile.mkdtemp(prefix=f".{index_dir.name}{BUILD_DIR_INFIX}{os.getpid()}-",
                                         dir=index_dir.parent))
    except OSError as error:
        raise LlaraError(f"cannot create the BM25 index {index_dir}: {error.strerror or error}") from None
    started = time.perf_counter()
    try:
        fingerprint = fingerprint_corpus(corpus_file)  # before reading: a corpus edited meanwhile reads as stale
        documents = _write_json_collection(corpus_file, work_dir / "collection", threads)
        built_dir = work_dir / "index"
        counters = _run_indexer(work_dir / "collection", built_dir, threads)
        if counters["errors"] or counters["unindexable"]:
            raise LlaraError(f"Anserini failed on {counters['errors'] + counters['unindexable']} documents of "
                             f"{corpus_file} while building {index_dir}")
        if not counters["indexed"]:
            raise UsageError(f"{corpus_file}: every document is empty, nothing to index")
        if counters["empty"]:
            logger.warning("%d empty documents of %s are not indexed (BM25 never retrieves them)",
                           counters["empty"], corpus_file)
        write_json(built_dir / MANIFEST_FILE, {
            "kind": MANIFEST_KIND,
            "format": MANIFEST_FORMAT,
            "corpus": fingerprint,
            "documents": documents,
            "indexed": counters["indexed"],
            "empty": counters["empty"],
            "anserini_version": anserini_version(),
            "analyzer": ANSERINI_ANALYZER,
            "anserini_options": [f"-collection {ANSERINI_COLLECTION}", f"-generator {ANSERINI_GENERATOR}",
                                 *ANSERINI_INDEX_OPTIONS],
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        })
        _move_into_place(built_dir, index_dir, work_dir / "previous")
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
        if created_parent and not any(index_dir.parent.iterdir()):  # a failed first build leaves nothing behind
            index_dir.parent.rmdir()
    logger.info("indexed %d documents of %s into %s in %.1f s", counters["indexed"], corpus_file, index_dir,
                time.perf_counter() - started)


def _move_into_place(built_dir: Path, index_dir: Path, previous: Path) -> None:
    """Rename the finished index onto ``index_dir``; a stale index there is moved aside first."""
    try:
        if index_dir.exists():
            os.replace(index_dir, previous)
        os.replace(built_dir, index_dir)
    except OSError as error:
        raise LlaraError(f"cannot move the new BM25 index into {index_dir}: {error.strerror or error}") from None


def build_bm25_index(
    corpus_path: str | Path,
    index_dir: str | Path | None = None,
    threads: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Build (or reuse) a Lucene BM25 index of a corpus and return its directory.

    ``corpus_path`` is anything :func:`~llara_cli.data.corpus.iter_documents` reads. Without ``index_dir``
    the index is cached beside the corpus or, when that directory is read-only, under ``$LLARA_HOME``.
    An index whose manifest matches the corpus is reused unless ``overwrite``; a stale one is rebuilt.
    The index is built in a temp directory and renamed into place, so an interrupted build leaves none.
    """
    corpus_file = resolve_corpus_file(corpus_path)
    threads = default_threads() if threads is None else threads
    if threads < 1:
        raise UsageError(f"threads must be at least 1, got {threads}")
    if index_dir is None:
        candidates = default_index_dirs(corpus_file)
        if not overwrite:
            for candidate in candidates:
                if _is_current(candidate, corpus_file):
                    logger.info("reusing the BM25 index %s", candidate)
                    return candidate
        writable = [candidate for candidate in candidates if _may_write_under(candidate.parent)]
        if not writable:
            raise LlaraError(f"no writable place for the BM25 index of {corpus_file}: set $LLARA_HOME "
                             "to a writable directory or pass an index directory")
        target = writable[0]
    else:
        target = Path(index_dir).expanduser().absolute()
        if not overwrite and _is_current(target, corpus_file):
            logger.info("reusing the BM25 index %s", target)
            return target
    _check_replaceable(target)
    _build(corpus_file, target, threads)
    return target


def check_bm25_params(k: int, k1: float, b: float) -> None:
    """Refuse hits and BM25 parameters Lucene cannot take, before any index is built."""
    if not 1 <= k <= MAX_K:
        raise UsageError(f"k (hits per query) must be at least 1 and at most {MAX_K}, got {k}")
    if not math.isfinite(k1) or k1 < 0:
        raise UsageError(f"BM25 k1 must be a finite number >= 0, got {k1}")
    if not 0 <= b <= 1:
        raise UsageError(f"BM25 b must be between 0 and 1, got {b}")


def _check_search_args(index_dir: Path, k: int, k1: float, b: float, threads: int) -> None:
    if not _has_lucene_segments(index_dir):
        raise UsageError(f"{index_dir} is not a Lucene index (no segments_* file): build it with build_bm25_index")
    check_bm25_params(k, k1, b)
    if threads < 1:
        raise UsageError(f"threads must be at least 1, got {threads}")


def bm25_search(
    index_dir: str | Path,
    queries: Sequence[Query],
    k: int = DEFAULT_K,
    k1: float = DEFAULT_K1,
    b: float = DEFAULT_B,
    threads: int | None = None,
) -> Results:
    """Search a Lucene index with BM25: ``{query_id: [(doc_id, score), ...]}`` best first, in query order.

    Scores are Anserini's (as ``pyserini.search.lucene`` reports them). Blank queries are skipped with
    a warning and map to an empty list, as do queries whose words are all stop words.
    """
    index_dir = Path(index_dir)
    threads = default_threads() if threads is None else threads
    _check_search_args(index_dir, k, k1, b, threads)
    check_unique_ids((query.query_id for query in queries), "queries", "query")
    searched = [query for query in queries if query.text.strip()]
    if len(searched) < len(queries):
        logger.warning("skipped %d blank queries (no results for them)", len(queries) - len(searched))
    results: Results = {}
    if searched:
        results = _batch_search(index_dir, searched, k, k1, b, threads)
    return {query.query_id: results.get(query.query_id, []) for query in queries}


class _LuceneBm25:
    """One open index searched the way Anserini's ``SimpleSearcher._search`` does, minus its per-hit objects.

    Same query (bag of words over ``contents`` with the index analyzer), same ranking (score, then doc id
    via doc values), same ``ScoreTiesAdjusterReranker`` (scores rounded to 1e-4, ties nudged by 1e-6), so
    results equal ``SimpleSearcher.batch_search``; but hits come back as two arrays per query instead of
    one Java object per hit, which pyjnius converts an order of magnitude faster.
    """

    def __init__(self, index_dir: Path, k1: float, b: float) -> None:
        autoclass = start_jvm()
        import jnius

        directory = autoclass(FS_DIRECTORY_CLASS).open(autoclass(JAVA_FILE_CLASS)(str(index_dir)).toPath())
        self.reader = autoclass(DIRECTORY_READER_CLASS).open(directory)
        # the cast picks IndexSearcher(IndexReader) among the constructor overloads
        self.searcher = autoclass(INDEX_SEARCHER_CLASS)(jnius.cast(INDEX_READER_CLASS, self.reader))
        self.searcher.setSimilarity(autoclass(BM25_SIMILARITY_CLASS)(float(k1), float(b)))
        self.analyzer = autoclass(INDEXER_CLASS).DEFAULT_ANALYZER
        self.generator = autoclass(QUERY_GENERATOR_CLASS)()
        self.sort = autoclass(SEARCH_COLLECTION_CLASS).BREAK_SCORE_TIES_BY_DOCID
        self.scored_docs = autoclass(SCORED_DOCS_CLASS)
        self.ties_adjuster = autoclass(TIES_ADJUSTER_CLASS)()

    def search(self, text: str, k: int) -> list[tuple[str, float]]:
        query = self.generator.buildQuery(CONTENTS_FIELD, self.analyzer, text)
        top_docs = self.searcher.search(query, k, self.sort, True)
        hits = self.ties_adjuster.rerank(self.scored_docs.fromTopDocs(top_docs, self.searcher), None)
        return list(zip(hits.docids, map(float, hits.scores)))

    def close(self) -> None:
        self.reader.close()


def _search_chunk(lucene: _LuceneBm25, queries: Sequence[Query], k: int, detach: bool) -> Results:
    try:
        return {query.query_id: lucene.search(query.text, k) for query in queries}
    finally:
        if detach:  # a worker thread attached to the JVM on its first call; release it before the thread ends
            import jnius

            jnius.detach()


def _batch_search(index_dir: Path, queries: Sequence[Query], k: int, k1: float, b: float, threads: int) -> Results:
    start_jvm()
    from jnius import JavaException

    try:
        lucene = _LuceneBm25(index_dir, k1, b)
    except JavaException as error:
        raise LlaraError(f"cannot open the Lucene index {index_dir}: {java_error_message(error)}") from None
    workers = min(threads, len(queries))
    try:
        if workers == 1:
            return _search_chunk(lucene, queries, k, detach=False)
        chunks = [queries[worker::workers] for worker in range(workers)]
        results: Results = {}
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="llara-bm25") as executor:
            futures = [executor.submit(_search_chunk, lucene, chunk, k, True) for chunk in chunks]
            for future in futures:
                results.update(future.result())
        return results
    except JavaException as error:
        raise LlaraError(f"BM25 search of {index_dir} failed: {java_error_message(error)}") from None
    finally:
        lucene.close()


def run_bm25(
    corpus_path: str | Path,
    queries_path: str | Path,
    out_run: str | Path,
    index_dir: str | Path | None = None,
    k: int = DEFAULT_K,
    k1: float = DEFAULT_K1,
    b: float = DEFAULT_B,
    threads: int | None = None,
    tag: str = DEFAULT_BM25_TAG,
    split: str | None = None,
) -> tuple[Path, int]:
    """Index (or reuse the index of) a corpus, search the queries with BM25, write a TREC run.

    With a BEIR directory as ``queries_path`` and a ``split``, only that split's judged queries are searched.
    Returns the index directory used and the number of queries searched.
    """
    check_bm25_params(k, k1, b)
    queries = queries_for_search(queries_path, split)
    index = build_bm25_index(corpus_path, index_dir, threads=threads)
    manifest = read_manifest(index) or {}
    if isinstance(manifest.get("documents"), int):
        warn_if_swapped(len(queries), manifest["documents"], corpus_path)
    write_run(out_run, bm25_search(index, queries, k=k, k1=k1, b=b, threads=threads), tag=tag)
    return index, len(queries)
