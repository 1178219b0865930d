"""Issue #28: the BM25 indexer never drops part of a corpus silently, and a damaged or edited-in-place cached
index is never reused (docs/reliability.md)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from llara_cli.errors import LlaraError, UsageError
from llara_cli.index import lucene_index
from llara_cli.index.lucene_index import MANIFEST_FILE, build_bm25_index, read_manifest

DOCS = [{"_id": f"d{number}", "text": f"protein cell river document {number}"} for number in range(12)]
HUGE_TEXT = "word " * 4_000_010  # 20,000,050 characters: past Jackson's 20,000,000 string limit


def write_corpus(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def test_a_document_past_the_json_reader_limit_is_refused_before_indexing(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.jsonl", [*DOCS[:3], {"_id": "huge", "text": HUGE_TEXT}, *DOCS[3:]])
    with pytest.raises(UsageError, match=r"document huge \(number 4\) has 20,000,050 characters.*at most 20,000,000"):
        build_bm25_index(corpus, tmp_path / "index", threads=1)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["corpus.jsonl"]


@pytest.mark.java
def test_documents_anserini_skips_fail_the_build_naming_them(tmp_path, monkeypatch):
    monkeypatch.setattr(lucene_index, "JSON_MAX_STRING_CHARS", 10**9)  # let the huge document reach Anserini
    corpus = write_corpus(tmp_path / "corpus.jsonl", [*DOCS[:3], {"_id": "huge", "text": HUGE_TEXT}, *DOCS[3:]])
    with pytest.raises(LlaraError, match=r"Anserini indexed \d+ of the 13 non-empty documents.*not indexed: .*huge"):
        build_bm25_index(corpus, tmp_path / "index", threads=1)
    assert not (tmp_path / "index").exists()


def test_an_id_longer_than_a_lucene_term_is_refused_at_its_line(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.jsonl", [*DOCS[:2], {"_id": "x" * 40_000, "text": "cell"}])
    with pytest.raises(UsageError, match=rf"{tmp_path / 'corpus.jsonl'}:3: .*40000 bytes long"):
        build_bm25_index(corpus, tmp_path / "index", threads=1)


@pytest.mark.java
def test_a_damaged_cached_index_is_rebuilt_and_an_in_place_edit_is_noticed(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.jsonl", DOCS)
    index = build_bm25_index(corpus, tmp_path / "index", threads=1)
    manifest = read_manifest(index)
    assert manifest["files"] and manifest["indexed"] == len(DOCS)
    segment = max((path for path in index.iterdir() if path.name != MANIFEST_FILE), key=lambda path: path.stat().st_size)
    segment.write_bytes(segment.read_bytes()[: segment.stat().st_size // 2])  # truncated on disk
    built = (index / MANIFEST_FILE).stat().st_mtime_ns
    assert build_bm25_index(corpus, index, threads=1) == index
    assert (index / MANIFEST_FILE).stat().st_mtime_ns != built  # rebuilt, not reused

    rebuilt = (index / MANIFEST_FILE).stat().st_mtime_ns
    info = corpus.stat()
    corpus.write_text(corpus.read_text().replace("river", "ocean"))  # same size ...
    os.utime(corpus, ns=(info.st_atime_ns, info.st_mtime_ns))  # ... and the old mtime put back
    assert build_bm25_index(corpus, index, threads=1) == index
    assert (index / MANIFEST_FILE).stat().st_mtime_ns != rebuilt
    assert read_manifest(index)["corpus"]["sha256"] != manifest["corpus"]["sha256"]


@pytest.mark.java
def test_a_corrupted_index_file_of_the_same_size_is_named_when_searched(tmp_path):
    from llara_cli.data.records import Query
    from llara_cli.search.bm25 import bm25_search

    index = build_bm25_index(write_corpus(tmp_path / "corpus.jsonl", DOCS), tmp_path / "index", threads=1)
    fields_meta = next(index.glob("*.fdm"))  # Lucene checks this file's footer checksum when the index opens
    data = bytearray(fields_meta.read_bytes())
    data[len(data) // 2] ^= 0xFF
    fields_meta.write_bytes(bytes(data))
    with pytest.raises(LlaraError, match=rf"{index}.*CorruptIndexException.*{fields_meta.name}.*the index is damaged"):
        bm25_search(index, [Query("q", "protein")], k=3)
