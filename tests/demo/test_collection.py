"""The demo collection (``llara_cli.demo.collection``): readable, judged, byte-identical, guarded."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from llara_cli.data.corpus import read_corpus, read_queries
from llara_cli.data.qrels import read_qrels
from llara_cli.demo.collection import COLLECTION_KIND, CollectionStats, build_stdlib_collection
from llara_cli.errors import UsageError
from llara_cli.storage.files import read_json

MAX_DOCUMENTS = 150
N_QUERIES = 20
SEED = 7
# A few top-level modules with many documented functions: a fast walk for the tests that need no full stdlib.
SMALL_MODULES = ("argparse", "json", "textwrap", "zipfile")
COLLECTION_FILES = ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv", "README.md", "collection.json")


def _build(out_dir: Path, **kwargs) -> CollectionStats:
    options = {"max_documents": MAX_DOCUMENTS, "n_queries": N_QUERIES, "seed": SEED, "modules": SMALL_MODULES}
    options.update(kwargs)
    return build_stdlib_collection(out_dir, **options)


@pytest.fixture(scope="module")
def full_walk(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CollectionStats]:
    """One build over the whole stdlib (about 2 s), small sizes."""
    out_dir = tmp_path_factory.mktemp("stdlib") / "collection"
    stats = build_stdlib_collection(out_dir, max_documents=MAX_DOCUMENTS, n_queries=N_QUERIES, seed=SEED)
    return out_dir, stats


def test_collection_is_readable_by_project_readers(full_walk: tuple[Path, CollectionStats]) -> None:
    out_dir, stats = full_walk
    documents = read_corpus(out_dir)
    queries = read_queries(out_dir)
    qrels = read_qrels(out_dir, "test")
    doc_ids = {document.doc_id for document in documents}
    query_ids = {query.query_id for query in queries}
    assert len(documents) == stats.n_documents == MAX_DOCUMENTS
    assert len(queries) == stats.n_queries == N_QUERIES
    assert len(qrels) == N_QUERIES
    assert {qrel.query_id for qrel in qrels} == query_ids  # exactly one judgement per query
    assert all(qrel.doc_id in doc_ids and qrel.relevance == 1 for qrel in qrels)
    assert (out_dir / "qrels" / "test.tsv").read_text(encoding="utf-8").startswith("query-id\tcorpus-id\tscore\n")


def test_files_and_stats(full_walk: tuple[Path, CollectionStats]) -> None:
    out_dir, stats = full_walk
    assert sorted(str(path.relative_to(out_dir)) for path in out_dir.rglob("*") if path.is_file()) == sorted(
        COLLECTION_FILES)
    saved = read_json(out_dir / "collection.json")
    assert saved == json.loads(json.dumps(stats.to_dict()))
    assert saved["kind"] == COLLECTION_KIND and saved["n_unparsable_files"] == 0
    first_record = json.loads((out_dir / "corpus.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert list(first_record) == ["_id", "title", "text"] and first_record["title"] == ""
    readme = (out_dir / "README.md").read_text(encoding="utf-8")
    assert "Python Software Foundation License" in readme and stats.python_version in readme


def test_queries_never_appear_in_their_document(full_walk: tuple[Path, CollectionStats]) -> None:
    out_dir, _ = full_walk
    texts = {document.doc_id: document.text for document in read_corpus(out_dir)}
    queries = {query.query_id: query.text for query in read_queries(out_dir)}
    for qrel in read_qrels(out_dir):
        query = queries[qrel.query_id]
        assert len(query.split()) >= 3
        assert query.lower() not in texts[qrel.doc_id].lower()


def test_build_is_byte_identical(full_walk: tuple[Path, CollectionStats], tmp_path: Path) -> None:
    out_dir, _ = full_walk
    again = tmp_path / "again"
    build_stdlib_collection(again, max_documents=MAX_DOCUMENTS, n_queries=N_QUERIES, seed=SEED)
    for name in COLLECTION_FILES:
        assert (again / name).read_bytes() == (out_dir / name).read_bytes(), name


def test_seed_changes_the_sample(tmp_path: Path) -> None:
    _build(tmp_path / "a", seed=1)
    _build(tmp_path / "b", seed=2)
    assert (tmp_path / "a" / "queries.jsonl").read_bytes() != (tmp_path / "b" / "queries.jsonl").read_bytes()


def test_sizes_are_respected(tmp_path: Path) -> None:
    stats = _build(tmp_path / "small", max_documents=30, n_queries=10)
    assert (stats.n_documents, stats.n_queries, stats.n_qrels) == (30, 10, 10)
    assert len(read_corpus(tmp_path / "small")) == 30
    # more than the pool holds: everything usable is written, no error
    stats = _build(tmp_path / "all", max_documents=100_000, n_queries=100_000)
    assert stats.n_documents == stats.n_pool_documents
    assert stats.n_queries == stats.n_query_candidates - stats.dropped.get("query_in_other_document", 0)


def test_split_name_is_used(tmp_path: Path) -> None:
    _build(tmp_path / "dev", split="dev")
    assert read_qrels(tmp_path / "dev", "dev")


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    out_dir = tmp_path / "collection"
    _build(out_dir)
    before = (out_dir / "corpus.jsonl").read_bytes()
    queries_before = (out_dir / "queries.jsonl").read_bytes()
    with pytest.raises(UsageError, match="not empty"):
        _build(out_dir, seed=SEED + 1)
    assert (out_dir / "corpus.jsonl").read_bytes() == before
    _build(out_dir, seed=SEED + 1, overwrite=True)
    assert (out_dir / "queries.jsonl").read_bytes() != queries_before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["collection"]  # no temp dirs left behind


def test_overwrite_only_replaces_a_collection(tmp_path: Path) -> None:
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("precious", encoding="utf-8")
    with pytest.raises(UsageError, match="not a collection"):
        _build(other, overwrite=True)
    assert (other / "keep.txt").read_text(encoding="utf-8") == "precious"
    empty = tmp_path / "empty"
    empty.mkdir()
    _build(empty)  # an existing empty directory is fine
    assert read_corpus(empty)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n_queries": 0}, "at least 1"),
    ({"max_documents": 5, "n_queries": 10}, "at least the number of queries"),
    ({"split": "../test"}, "plain name"),
])
def test_bad_parameters(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        _build(tmp_path / "out", **kwargs)
