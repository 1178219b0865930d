"""MTEB's own retrieval evaluator, offline, on a BEIR directory: the exported model scores what `llara evaluate` says."""
from __future__ import annotations

import json
import random

import pytest
from typer.testing import CliRunner

from llara_cli.cli.app import app
from llara_cli.errors import UsageError
from tests.conftest import WORDS

mteb = pytest.importorskip("mteb")
pytest.importorskip("sentence_transformers")

N_DOCS, N_QUERIES = 40, 12


@pytest.fixture
def beir_dir(tmp_path):
    rng = random.Random(7)
    directory = tmp_path / "tinybeir"
    (directory / "qrels").mkdir(parents=True)
    docs = {f"d{index}": " ".join(rng.choices(WORDS, k=rng.randrange(4, 30))) for index in range(N_DOCS)}
    queries, qrels = {}, []
    for index in range(N_QUERIES):
        relevant = rng.sample(sorted(docs), 2)
        queries[f"q{index}"] = " ".join(rng.sample(docs[relevant[0]].split(), 3))
        qrels += [(f"q{index}", relevant[0], 2), (f"q{index}", relevant[1], 1)]
    (directory / "corpus.jsonl").write_text("".join(
        json.dumps({"_id": doc_id, "title": "t" if index % 3 == 0 else "", "text": text}) + "\n"
        for index, (doc_id, text) in enumerate(docs.items())))
    (directory / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": query_id, "text": text}) + "\n" for query_id, text in queries.items()))
    (directory / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{r}\n" for q, d, r in qrels))
    return directory


def _invoke(*args):
    result = CliRunner().invoke(app, [str(arg) for arg in args])
    assert result.exit_code == 0, result.output
    return result


def test_mteb_ndcg_at_10_equals_llara_evaluate_on_the_same_collection(beir_dir, tiny_model_dir, tmp_path):
    from sentence_transformers import SentenceTransformer

    from llara_cli.evaluation.mteb_tasks import beir_retrieval_task

    _invoke("encode", beir_dir, "--model", tiny_model_dir, "--out", tmp_path / "emb", "--dtype", "fp32")
    _invoke("index", tmp_path / "emb", "--out", tmp_path / "index")
    _invoke("search", "--index", tmp_path / "index", "--queries", beir_dir, "--out", tmp_path / "dense.trec",
            "--k", N_DOCS, "--dtype", "fp32")
    evaluated = json.loads(_invoke("evaluate", tmp_path / "dense.trec", "--qrels", beir_dir, "--json",
                                   "--measures", "nDCG@10").stdout)
    llara_ndcg = evaluated["runs"]["dense"]["aggregates"]["nDCG@10"]

    _invoke("export", tiny_model_dir, "--out", tmp_path / "st")
    model = SentenceTransformer(str(tmp_path / "st"), trust_remote_code=True, device="cpu")
    task = beir_retrieval_task(beir_dir)
    results = mteb.evaluate(model, task, cache=None, show_progress_bar=False)
    scores = results.task_results[0].scores["test"][0]
    assert 0 < llara_ndcg < 1
    assert scores["ndcg_at_10"] == pytest.approx(llara_ndcg, abs=1e-4)


def test_a_missing_directory_is_a_usage_error(tmp_path):
    from llara_cli.evaluation.mteb_tasks import beir_retrieval_task

    with pytest.raises(UsageError, match="not a BEIR-layout directory"):
        beir_retrieval_task(tmp_path / "absent")
