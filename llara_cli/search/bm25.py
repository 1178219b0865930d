"""BM25 search of a Lucene index through Anserini, called directly over pyjnius (no pyserini import, fast start).

Queries go through Anserini's bag-of-words query generator, so no query syntax is parsed: ``?``, ``*``,
quotes, brackets or ``AND`` in a query are plain text. :class:`Bm25Searcher` is the Pyserini-style object;
:func:`run_bm25` is ``llara search --bm25``. Building the index is :mod:`llara_cli.index.lucene_index`.
"""
from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from llara_cli.data.corpus import check_unique_ids, queries_for_search, warn_if_swapped
from llara_cli.data.records import Query
from llara_cli.data.runs import write_run
from llara_cli.errors import LlaraError, UsageError
from llara_cli.index.lucene_index import (
    INDEXER_CLASS,
    build_bm25_index,
    default_threads,
    has_lucene_segments,
    read_manifest,
)
from llara_cli.runtime.jvm import java_error_message, start_jvm

logger = logging.getLogger(__name__)

Results = dict[str, list[tuple[str, float]]]  # {query_id: [(doc_id, score), ...]} best first
DEFAULT_K = 1000
SINGLE_QUERY_ID = "q"  # the id Bm25Searcher.search gives its one query
MAX_K = 2**31 - 1  # Lucene takes the number of hits as a Java int
DEFAULT_K1 = 0.9
DEFAULT_B = 0.4
DEFAULT_BM25_TAG = "bm25"
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


def check_bm25_params(k: int, k1: float, b: float) -> None:
    """Refuse hits and BM25 parameters Lucene cannot take, before any index is built."""
    if not 1 <= k <= MAX_K:
        raise UsageError(f"k (hits per query) must be at least 1 and at most {MAX_K}, got {k}")
    if not math.isfinite(k1) or k1 < 0:
        raise UsageError(f"BM25 k1 must be a finite number >= 0, got {k1}")
    if not 0 <= b <= 1:
        raise UsageError(f"BM25 b must be between 0 and 1, got {b}")


def _check_search_args(index_dir: Path, k: int, k1: float, b: float, threads: int) -> None:
    if not has_lucene_segments(index_dir):
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
        raise LlaraError(f"cannot open the Lucene index {index_dir}: {java_error_message(error)}"
                         f"{damaged_hint(error)}") from None
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
        raise LlaraError(f"BM25 search of {index_dir} failed: {java_error_message(error)}{damaged_hint(error)}") from None
    finally:
        lucene.close()


def damaged_hint(error: Exception) -> str:
    """What to do when Lucene reports a damaged index: llara rebuilds a missing index on the next run."""
    if "CorruptIndexException" in str(error) or "IndexFormatTooOld" in str(error):
        return "; the index is damaged: delete that directory and run again (llara rebuilds it from the corpus)"
    return ""


class Bm25Searcher:
    """BM25 over a corpus, Pyserini's ``LuceneSearcher`` in llara's terms: the Lucene index is built once (or
    reused when current) from ``corpus`` -- a jsonl/tsv file or a BEIR directory -- and searched with Anserini::

        searcher = Bm25Searcher("data/scifact")
        hits = searcher.search("what does aspirin do to platelets", k=10)  # [(doc_id, score), ...] best first
    """

    def __init__(self, corpus: str | Path, *, index_dir: str | Path | None = None, k1: float = DEFAULT_K1,
                 b: float = DEFAULT_B, threads: int | None = None) -> None:
        check_bm25_params(DEFAULT_K, k1, b)
        self.k1, self.b, self.threads = k1, b, threads
        self.index_dir = build_bm25_index(corpus, index_dir, threads=threads)
        manifest = read_manifest(self.index_dir) or {}
        self.num_docs = manifest.get("documents") if isinstance(manifest.get("documents"), int) else None
        self._lucene: _LuceneBm25 | None = None  # opened by the first search(), kept open
        self._open_lock = threading.Lock()

    def batch_search(self, texts: Sequence[str], query_ids: Sequence[str], k: int = DEFAULT_K) -> Results:
        """``{query_id: [(doc_id, score), ...]}``, best first, ``k`` per query (blank queries: no results)."""
        if len(texts) != len(query_ids):
            raise UsageError(f"{len(query_ids)} query ids for {len(texts)} queries")
        queries = [Query(query_id, text) for query_id, text in zip(query_ids, texts)]
        return bm25_search(self.index_dir, queries, k=k, k1=self.k1, b=self.b, threads=self.threads)

    def search(self, text: str, k: int = DEFAULT_K) -> list[tuple[str, float]]:
        """The top ``k`` ``(doc_id, score)`` of one query, best first (a blank query: no results).

        The index stays open between calls (as Pyserini's ``LuceneSearcher`` keeps it), so a service answering
        one query at a time pays no index open per query; safe to call from several threads at once.
        """
        check_bm25_params(k, self.k1, self.b)
        if not text.strip():
            return []
        lucene = self._open_index()  # starts the JVM (with Anserini) before jnius is imported
        from jnius import JavaException

        try:
            return lucene.search(text, k)
        except JavaException as error:
            raise LlaraError(f"BM25 search of {self.index_dir} failed: {java_error_message(error)}") from None

    def _open_index(self) -> _LuceneBm25:
        with self._open_lock:
            if self._lucene is None:
                start_jvm()
                from jnius import JavaException

                try:
                    self._lucene = _LuceneBm25(self.index_dir, self.k1, self.b)
                except JavaException as error:
                    raise LlaraError(f"cannot open the Lucene index {self.index_dir}: "
                                     f"{java_error_message(error)}") from None
            return self._lucene

    def close(self) -> None:
        """Close the index kept open by :meth:`search` (it reopens on the next call)."""
        with self._open_lock:
            if self._lucene is not None:
                self._lucene.close()
                self._lucene = None


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
    searcher = Bm25Searcher(corpus_path, index_dir=index_dir, k1=k1, b=b, threads=threads)
    if searcher.num_docs is not None:
        warn_if_swapped(len(queries), searcher.num_docs, corpus_path)
    results = searcher.batch_search([query.text for query in queries], [query.query_id for query in queries], k=k)
    write_run(out_run, results, tag=tag)
    return searcher.index_dir, len(queries)
