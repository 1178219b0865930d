"""Lucene BM25 indexes of a corpus, built once through Anserini's indexer (over pyjnius) and reused.

An index's ``llara_bm25.json`` manifest records the corpus fingerprint (size, mtime, sha256); a changed corpus
is re-indexed. Analysis is Anserini's default English analyzer (Porter stemming, Lucene's English stop words),
the same as ``pyserini.index.lucene``. Indexes are cached beside the corpus or under ``$LLARA_HOME``, built in a
work directory and renamed into place. Searching them is :mod:`llara_cli.search.bm25`.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import shutil
import stat
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from llara_cli.data.corpus import BEIR_CORPUS_FILE, iter_documents, resolve_beir_file
from llara_cli.errors import LlaraError, UsageError
from llara_cli.runtime.home import llara_home
from llara_cli.runtime.jvm import anserini_version, java_error_message, start_jvm
from llara_cli.storage.files import file_sha256, read_json, write_json
from llara_cli.storage.locks import process_alive
from llara_cli.storage.outputs import OutputKind, check_output_directory

logger = logging.getLogger(__name__)



BUILD_DIR_INFIX = ".build-"  # work directories: .<index name>.build-<pid>-<random>
MANIFEST_FILE = "llara_bm25.json"
MANIFEST_KIND = "llara-bm25"
MANIFEST_FORMAT = 1
LOCAL_CACHE_DIR = ".llara"  # beside the corpus
CACHE_SUBDIR = "bm25"  # under $LLARA_HOME
INDEX_DIR_PREFIX = "bm25-"
PATH_DIGEST_CHARS = 16
COLLECTION_SHARD_NAME = "docs-{shard:03d}.jsonl"  # Anserini indexes one collection file per thread
LUCENE_SEGMENTS_PREFIX = "segments_"
ANY_WRITE_BITS = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
ANSERINI_COLLECTION = "JsonCollection"
ANSERINI_GENERATOR = "DefaultLuceneDocumentGenerator"
ANSERINI_ANALYZER = "DefaultEnglishAnalyzer (Porter stemming, English stop words)"
ANSERINI_INDEX_OPTIONS = ("-storePositions", "-storeDocvectors")  # recorded in the manifest; raw text not stored
INDEXER_CLASS = "io.anserini.index.IndexCollection"
INDEXER_ARGS_CLASS = "io.anserini.index.IndexCollection$Args"
INDEXER_COUNTERS = ("indexed", "empty", "unindexable", "skipped", "errors")
# Jackson's StreamReadConstraints.maxStringLength (Anserini reads JsonCollection with Jackson): a longer string
# makes the reader give up on the rest of its file
JSON_MAX_STRING_CHARS = 20_000_000
JAVA_TRIM_CHARS = "".join(chr(code) for code in range(0x21))  # String.trim(): Anserini's test for an empty document
DOCUMENTS_SHOWN = 5
ID_FIELD = "id"  # Anserini's Constants.ID, the stored id of every Lucene document




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


def fingerprint_corpus(corpus_file: Path) -> dict[str, Any]:
    """``{path, size, mtime_ns, ctime_ns, inode, sha256}`` of a corpus file."""
    info = corpus_file.stat()
    return {"path": str(corpus_file), "size": info.st_size, "mtime_ns": info.st_mtime_ns,
            "ctime_ns": info.st_ctime_ns, "inode": info.st_ino, "sha256": file_sha256(corpus_file)}


def _unchanged_file(recorded: dict[str, Any], info: os.stat_result) -> bool:
    """Whether the corpus is provably the file fingerprinted: same inode, size, mtime *and* ctime (an edit that
    restores size and mtime still moves the ctime, which no user can set back)."""
    return (recorded.get("inode") == info.st_ino and recorded.get("size") == info.st_size
            and recorded.get("mtime_ns") == info.st_mtime_ns and recorded.get("ctime_ns") == info.st_ctime_ns)


def index_files(index_dir: Path) -> dict[str, int]:
    """``{file name: size}`` of the Lucene files of an index (the manifest excluded)."""
    return {path.name: path.stat().st_size for path in sorted(index_dir.iterdir())
            if path.is_file() and path.name != MANIFEST_FILE}


def damaged_index_files(index_dir: Path, manifest: dict[str, Any]) -> list[str]:
    """The Lucene files that are missing or changed size since the build recorded them (empty: intact)."""
    recorded = manifest.get("files")
    if not isinstance(recorded, dict):
        return ["(no file list in the manifest)"]
    present = index_files(index_dir)
    return sorted(name for name, size in recorded.items() if present.get(name) != size)


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

    The same file (inode, size, mtime and ctime) is trusted; anything else of the same size (a copy, a touch,
    an edit that kept size and mtime) is settled by the sha256. Lucene files missing or resized since the build
    (a truncated or deleted segment) make it stale, so it is rebuilt.
    """
    manifest = read_manifest(index_dir)
    if manifest is None or manifest.get("format") != MANIFEST_FORMAT:
        return False
    if manifest.get("anserini_version") != anserini_version() or not has_lucene_segments(index_dir):
        return False
    damaged = damaged_index_files(index_dir, manifest)
    if damaged:
        logger.warning("the BM25 index %s is damaged (%s missing or changed since it was built): rebuilding it",
                       index_dir, ", ".join(damaged[:DOCUMENTS_SHOWN]))
        return False
    recorded = manifest.get("corpus") or {}
    info = corpus_file.stat()
    if recorded.get("size") != info.st_size:
        return False
    return _unchanged_file(recorded, info) or recorded.get("sha256") == file_sha256(corpus_file)


def has_lucene_segments(index_dir: Path) -> bool:
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


def _check_indexable(corpus_file: Path, position: int, doc_id: str, text: str) -> None:
    """Refuse, before Anserini runs, a document past a limit that would make it skip the rest of its file."""
    if len(text) > JSON_MAX_STRING_CHARS:
        raise UsageError(f"{corpus_file}: document {doc_id} (number {position}) has {len(text):,} characters; "
                         f"Anserini's JSON reader takes at most {JSON_MAX_STRING_CHARS:,}: split or shorten it")


def _write_json_collection(corpus_file: Path, collection_dir: Path, shards: int) -> tuple[int, int]:
    """Write the corpus as Pyserini JsonCollection files (``{"id", "contents"}``).

    Returns ``(documents, empty documents)``: Anserini skips the empty ones (blank after Java's ``trim``).
    """
    collection_dir.mkdir(parents=True)
    seen: set[str] = set()
    count = empty = 0
    with ExitStack() as stack:
        handles = [
            stack.enter_context(open(collection_dir / COLLECTION_SHARD_NAME.format(shard=shard), "w", encoding="utf-8"))
            for shard in range(shards)
        ]
        for document in iter_documents(corpus_file):
            if document.doc_id in seen:
                raise UsageError(f"{corpus_file}: duplicate document id {document.doc_id}")
            seen.add(document.doc_id)
            _check_indexable(corpus_file, count + 1, document.doc_id, document.text)
            empty += not document.text.strip(JAVA_TRIM_CHARS)
            record = {"id": document.doc_id, "contents": document.text}
            handles[count % shards].write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    if not count:
        raise UsageError(f"{corpus_file}: corpus is empty")
    return count, empty


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


def _indexed_ids(index_dir: Path) -> set[str]:
    """The stored ids of every document of a Lucene index."""
    autoclass = start_jvm()
    directory = autoclass("org.apache.lucene.store.FSDirectory").open(
        autoclass("java.io.File")(str(index_dir)).toPath())
    reader = autoclass("org.apache.lucene.index.DirectoryReader").open(directory)
    try:
        stored = reader.storedFields()
        return {stored.document(number).get(ID_FIELD) for number in range(reader.maxDoc())}
    finally:
        reader.close()


def _check_all_indexed(corpus_file: Path, built_dir: Path, documents: int, empty: int,
                       counters: dict[str, int]) -> None:
    """Fail, naming the documents, when Anserini indexed fewer than it read (it skips the rest of a file it
    cannot parse, and reports success)."""
    if counters["indexed"] + counters["empty"] == documents and counters["empty"] == empty:
        return
    indexed = _indexed_ids(built_dir)
    missing = [document.doc_id for document in iter_documents(corpus_file)
               if document.doc_id not in indexed and document.text.strip(JAVA_TRIM_CHARS)]
    shown = ", ".join(missing[:DOCUMENTS_SHOWN]) + (", ..." if len(missing) > DOCUMENTS_SHOWN else "")
    raise LlaraError(f"Anserini indexed {len(indexed)} of the {documents - empty} non-empty documents of "
                     f"{corpus_file}; not indexed: {shown or 'unknown'}; no BM25 index was written")


def _check_replaceable(index_dir: Path, corpus_file: Path) -> None:
    """Refuse to replace anything but a missing path, an empty directory or a llara BM25 index; never the
    corpus's own directory."""
    if index_dir.exists() and not index_dir.is_dir():
        raise UsageError(f"{index_dir} is a file, not an index directory")
    if index_dir.is_dir() and read_manifest(index_dir) is None and any(index_dir.iterdir()):
        raise UsageError(f"{index_dir} is not empty and is not a llara BM25 index: choose another index directory")
    check_output_directory(index_dir, OutputKind.BM25_INDEX, [corpus_file], overwrite=True)


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
        documents, empty = _write_json_collection(corpus_file, work_dir / "collection", threads)
        built_dir = work_dir / "index"
        counters = _run_indexer(work_dir / "collection", built_dir, threads)
        if counters["errors"] or counters["unindexable"]:
            raise LlaraError(f"Anserini failed on {counters['errors'] + counters['unindexable']} documents of "
                             f"{corpus_file} while building {index_dir}")
        _check_all_indexed(corpus_file, built_dir, documents, empty, counters)
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
            "files": index_files(built_dir),
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
    _check_replaceable(target, corpus_file)
    _build(corpus_file, target, threads)
    return target
