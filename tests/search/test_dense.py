"""DenseSearcher: the Pyserini-style object behind `llara search --index`, on the tiny model."""
from __future__ import annotations

import pytest

from llara_cli.data.runs import group_run, read_run
from llara_cli.errors import UsageError
from llara_cli.search.dense import DenseSearcher
from tests.cli.conftest import invoke
from tests.cli.test_pipeline_cli import QUERIES


@pytest.fixture
def index_dir(beir_dir, tiny_model_dir, tmp_path):
    assert invoke("encode", beir_dir, "--model", tiny_model_dir, "--out", tmp_path / "emb").exit_code == 0
    assert invoke("index", tmp_path / "emb", "--out", tmp_path / "index").exit_code == 0
    return tmp_path / "index"


def test_dense_searcher_returns_the_run_that_llara_search_writes(index_dir, beir_dir, tmp_path):
    result = invoke("search", "--index", index_dir, "--queries", beir_dir, "--out", tmp_path / "dense.trec",
                    "--k", 3, "--dtype", "fp32")
    assert result.exit_code == 0, result.output
    written = group_run(read_run(tmp_path / "dense.trec"))
    searcher = DenseSearcher(index_dir, dtype="fp32")
    found = searcher.batch_search(list(QUERIES.values()), list(QUERIES), k=3)
    assert {query_id: [doc_id for doc_id, _ in hits] for query_id, hits in found.items()} == {
        query_id: [doc_id for doc_id, _ in hits] for query_id, hits in written.items()}
    single = searcher.search(QUERIES["q1"], k=3)
    assert [doc_id for doc_id, _ in single] == [doc_id for doc_id, _ in found["q1"]]
    assert [score for _, score in single] == pytest.approx([score for _, score in found["q1"]], abs=1e-6)


def test_dense_searcher_refuses_another_model_than_the_indexes(index_dir):
    with pytest.raises(UsageError, match="same model"):
        DenseSearcher(index_dir, model="smollm2-135m")


def test_a_searcher_handed_an_encoder_searches_as_one_that_loads_its_own(index_dir, tiny_model_dir):
    from llara_cli.encode.encoder import LlaraEncoder

    own = DenseSearcher(index_dir, dtype="fp32")
    encoder = LlaraEncoder.load(str(tiny_model_dir), dtype="fp32")
    handed = DenseSearcher(index_dir, encoder=encoder)
    assert handed.encoder is encoder
    assert handed.batch_search(list(QUERIES.values()), list(QUERIES), k=3) == own.batch_search(
        list(QUERIES.values()), list(QUERIES), k=3)


def test_a_handed_encoder_of_another_family_is_refused(index_dir, tiny_model_dir):
    from llara_cli.encode.encoder import LlaraEncoder

    encoder = LlaraEncoder.load(str(tiny_model_dir), dtype="fp32", prompt_family="flagembedding")
    with pytest.raises(UsageError, match="prompt family"):
        DenseSearcher(index_dir, encoder=encoder)
