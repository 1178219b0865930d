from __future__ import annotations

from pathlib import Path

import pytest

from llara_cli.data.collections import resolve_corpus, resolve_qrels, resolve_queries
from llara_cli.errors import UsageError


@pytest.fixture()
def data_root(tmp_path, monkeypatch):
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("LLARA_DATA", str(root))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # keep ~/.cache/llara/data out of the test
    monkeypatch.chdir(tmp_path)
    return root


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("1\t0\td1\t1\n")
    return path


def test_msmarco_names_found_under_llara_data(data_root):
    qrels = _touch(data_root / "msmarco-passage" / "qrels.dev.small.tsv")
    queries = _touch(data_root / "msmarco-passage" / "queries.dev.small.tsv")
    assert resolve_qrels("msmarco") == qrels
    assert resolve_qrels("msmarco-passage-dev") == qrels
    assert resolve_queries("msmarco") == queries
    doc_qrels = _touch(data_root / "msmarco-doc" / "msmarco-docdev-qrels.tsv.gz")
    assert resolve_qrels("msmarco-doc-dev") == doc_qrels


def test_beir_and_bundled_names_use_the_split(data_root):
    test = _touch(data_root / "beir" / "nfcorpus" / "qrels" / "test.tsv")
    dev = _touch(data_root / "beir" / "nfcorpus" / "qrels" / "dev.tsv")
    assert resolve_qrels("beir/nfcorpus") == test
    assert resolve_qrels("beir/nfcorpus", split="dev") == dev
    corpus = _touch(data_root / "cranfield" / "corpus.jsonl")
    assert resolve_corpus("cranfield") == corpus


def test_missing_file_names_the_exact_path(data_root):
    expected = data_root / "msmarco-passage" / "qrels.dev.small.tsv"
    with pytest.raises(UsageError) as raised:
        resolve_qrels("msmarco")
    message = str(raised.value)
    assert f"put qrels.dev.small.tsv (from the MS MARCO passage ranking dev set) at {expected}" in message
    assert "\n" not in message
    with pytest.raises(UsageError, match=str(data_root / "beir" / "fiqa" / "qrels" / "train.tsv")):
        resolve_qrels("beir/fiqa", split="train")


def test_missing_file_without_llara_data_suggests_it(tmp_path, monkeypatch):
    monkeypatch.delenv("LLARA_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    expected = tmp_path / ".cache" / "llara" / "data" / "scifact" / "queries.jsonl"
    with pytest.raises(UsageError, match=f"at {expected} or set LLARA_DATA"):
        resolve_queries("scifact")


def test_existing_path_wins(data_root, tmp_path):
    _touch(data_root / "msmarco-passage" / "qrels.dev.small.tsv")
    local = _touch(tmp_path / "msmarco")
    assert resolve_qrels("msmarco") == Path("msmarco")
    assert resolve_qrels(local) == local
    beir_dir = tmp_path / "mine"
    split_file = _touch(beir_dir / "qrels" / "test.tsv")
    assert resolve_qrels(beir_dir) == split_file
    assert resolve_queries(beir_dir) == beir_dir


def test_unknown_name_lists_known_names(data_root):
    with pytest.raises(UsageError, match="not a known collection name .known: msmarco, .*cranfield, beir/<name>"):
        resolve_qrels("robust04")
