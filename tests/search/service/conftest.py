"""A tiny served collection: the pipeline tests' six documents, a faiss index of the tiny model and BM25."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.test_pipeline_cli import DOCS, QRELS, QUERIES, invoke

MORE_QUERIES = {f"x{number}": text for number, text in enumerate(
    ["protein cell", "river music", "energy water light", "king history war", "computer network",
     "dense vector search index", "cancer treatment study", "film city", "neural learning model",
     "gene disease risk", "queen king", "language model retrieval", "health food", "old war history",
     "fast computer program", "light energy"])}
ALL_QUERIES = {**QUERIES, **MORE_QUERIES}


@pytest.fixture(scope="session")
def served_collection(tmp_path_factory, tiny_model_dir) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("served")
    collection = root / "collection"
    (collection / "qrels").mkdir(parents=True)
    (collection / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": doc_id, "title": "", "text": text}) + "\n" for doc_id, text in DOCS.items()))
    (collection / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": query_id, "text": text}) + "\n" for query_id, text in ALL_QUERIES.items()))
    (collection / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{r}\n" for q, d, r in QRELS)
        + "".join(f"{query_id}\td1\t0\n" for query_id in MORE_QUERIES))
    result = invoke("encode", collection, "--model", tiny_model_dir, "--out", root / "emb", "--dtype", "fp32")
    assert result.exit_code == 0, result.output
    result = invoke("index", root / "emb", "--out", root / "index")
    assert result.exit_code == 0, result.output
    return {"collection": collection, "corpus": collection / "corpus.jsonl", "emb": root / "emb",
            "index": root / "index", "root": root}
