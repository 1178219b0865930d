"""Pyserini's own FaissSearcher opens llara indexes and, with the llara query encoder, returns `llara search`'s hits."""
from __future__ import annotations

import importlib.util
import os

import pytest
from typer.testing import CliRunner

from llara_cli.cli.app import app
from llara_cli.data.runs import group_run, read_run
from tests.cli.test_pipeline_cli import QUERIES, beir_dir  # noqa: F401 - fixture

if importlib.util.find_spec("pyserini") is None or importlib.util.find_spec("jnius") is None:  # not imported:
    pytest.skip("pyserini and pyjnius are not installed", allow_module_level=True)  # jnius starts a JVM on import


def _invoke(*args):
    result = CliRunner().invoke(app, [str(arg) for arg in args])
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.parametrize("index_type", ["flat", "hnsw"])
def test_faiss_searcher_returns_llara_search_hits(beir_dir, tiny_model_dir, tmp_path, index_type):  # noqa: F811
    from llara_cli.search.pyserini_bridge import OPENAI_KEY_ENV, open_faiss_searcher

    _invoke("encode", beir_dir, "--model", tiny_model_dir, "--out", tmp_path / "emb", "--dtype", "fp32")
    _invoke("index", tmp_path / "emb", "--out", tmp_path / "index", "--type", index_type)
    _invoke("search", "--index", tmp_path / "index", "--queries", beir_dir, "--out", tmp_path / "run.trec",
            "--k", 5, "--dtype", "fp32")
    llara_hits = group_run(read_run(tmp_path / "run.trec"))
    key_before = os.environ.get(OPENAI_KEY_ENV)

    searcher = open_faiss_searcher(tmp_path / "index")
    assert type(searcher).__module__.startswith("pyserini.")  # Pyserini's own class
    assert os.environ.get(OPENAI_KEY_ENV) == key_before  # the placeholder did not outlive the import
    assert os.environ.get("JAVA_HOME")  # set to the runtime llara started, for pyserini's trec_eval
    hits = searcher.batch_search(list(QUERIES.values()), list(QUERIES), k=5)
    for query_id in QUERIES:
        assert [hit.docid for hit in hits[query_id]] == [doc_id for doc_id, _ in llara_hits[query_id]]
        assert [hit.score for hit in hits[query_id]] == pytest.approx([score for _, score in llara_hits[query_id]],
                                                                      abs=1e-5)
    single = searcher.search(QUERIES["q1"], k=5)
    assert [hit.docid for hit in single] == [doc_id for doc_id, _ in llara_hits["q1"]]
