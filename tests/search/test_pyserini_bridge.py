"""Pyserini's own FaissSearcher opens llara indexes and, with the llara query encoder, returns `llara search`'s hits."""
from __future__ import annotations

import importlib.util
import os

import pytest
from typer.testing import CliRunner

from llara_cli.cli.app import app
from llara_cli.data.runs import group_run, read_run
from tests.cli.test_pipeline_cli import QUERIES

if importlib.util.find_spec("pyserini") is None or importlib.util.find_spec("jnius") is None:  # not imported:
    pytest.skip("pyserini and pyjnius are not installed", allow_module_level=True)  # jnius starts a JVM on import


def _invoke(*args):
    result = CliRunner().invoke(app, [str(arg) for arg in args])
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.parametrize("index_type", ["flat", "hnsw"])
def test_faiss_searcher_returns_llara_search_hits(beir_dir, tiny_model_dir, tmp_path, index_type):
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


def test_pyserini_trec_eval_runs_in_process_and_agrees_with_llara_evaluate(tmp_path):
    from llara_cli.data.qrels import Qrel
    from llara_cli.data.runs import ScoredDoc, write_run
    from llara_cli.evaluation.evaluator import evaluate_runs
    from llara_cli.search.pyserini_bridge import prepare_pyserini

    prepare_pyserini()
    from pyserini.eval.trec_eval import trec_eval  # runs `java` from $PATH: the bundled Java 21 now

    results = {"q1": [("d1", 0.5), ("d2", 0.9), ("d3", 0.9)], "q2": [("d4", 0.2), ("d5", 0.7)]}
    qrels = [Qrel("q1", "d1", 1), Qrel("q1", "d3", 2), Qrel("q2", "d4", 1)]
    (tmp_path / "qrels.trec").write_text("".join(f"{q.query_id} 0 {q.doc_id} {q.relevance}\n" for q in qrels))
    write_run(tmp_path / "run.trec", results)
    pyserini_ndcg = trec_eval(["trec_eval", "-c", "-m", "ndcg_cut.10", str(tmp_path / "qrels.trec"),
                               str(tmp_path / "run.trec")])
    scored = [ScoredDoc(query_id, doc_id, score) for query_id, pairs in results.items() for doc_id, score in pairs]
    llara_ndcg = evaluate_runs(qrels, {"run": scored}, measures=["nDCG@10"]).runs["run"].aggregates["nDCG@10"]
    assert pyserini_ndcg == pytest.approx(llara_ndcg, abs=1e-4)  # trec_eval prints 4 decimals
