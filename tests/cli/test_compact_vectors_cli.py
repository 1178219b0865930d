"""Compact vectors through the CLI on the tiny model: encode --dim, index --type binary/int8, search --rescore-factor."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from llara_cli.data.runs import read_run
from llara_cli.encode.embedding_store import META_FILE, load_embeddings
from llara_cli.encode.truncation import TRUNCATED_FROM_FIELD
from llara_cli.index.rescore_store import RESCORE_FILE
from tests.cli.conftest import invoke
from tests.cli.test_pipeline_cli import DOCS, QUERIES

FULL_DIM = 64  # the tiny model's hidden size


def run_pairs(path):
    return {(scored.query_id, scored.doc_id): scored.score for scored in read_run(path)}


@pytest.fixture
def full_emb(beir_dir, tiny_model_dir, tmp_path):
    result = invoke("encode", beir_dir, "--model", tiny_model_dir, "--out", tmp_path / "emb", "--batch-size", 4)
    assert result.exit_code == 0, result.output
    return tmp_path / "emb"


def test_encode_dim_stores_the_renormalised_prefix_and_records_it(beir_dir, tiny_model_dir, tmp_path, full_emb,
                                                                   caplog):
    with caplog.at_level(logging.WARNING):
        result = invoke("encode", beir_dir, "--model", tiny_model_dir, "--out", tmp_path / "emb16", "--dim", 16)
    assert result.exit_code == 0, result.output
    assert "dim 16" in result.stdout
    full, short = load_embeddings(full_emb), load_embeddings(tmp_path / "emb16")
    prefix = full.vectors[:, :16] / np.linalg.norm(full.vectors[:, :16], axis=1, keepdims=True)
    np.testing.assert_allclose(short.vectors, prefix, rtol=1e-5, atol=1e-6)
    meta = json.loads((tmp_path / "emb16" / META_FILE).read_text())
    assert meta["dim"] == 16 and meta[TRUNCATED_FROM_FIELD] == FULL_DIM
    assert sum("was not trained for 16-dimensional prefixes" in record.getMessage()
               for record in caplog.records) == 1  # a plain model: warned, once


def test_encode_dim_larger_than_the_model_is_one_line(beir_dir, tiny_model_dir, tmp_path):
    result = invoke("encode", beir_dir, "--model", tiny_model_dir, "--out", tmp_path / "emb", "--dim", 65)
    assert result.exit_code == 2
    assert "--dim 65 is larger than the 64-dimensional vectors" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "emb" / META_FILE).exists()


def test_search_truncated_index_cuts_the_queries_and_refuses_another_dim(beir_dir, tiny_model_dir, tmp_path):
    assert invoke("encode", beir_dir, "--model", tiny_model_dir, "--out", tmp_path / "emb16", "--dim", 16).exit_code == 0
    assert invoke("index", tmp_path / "emb16", "--out", tmp_path / "index").exit_code == 0
    result = invoke("search", "--index", tmp_path / "index", "--queries", beir_dir, "--out", tmp_path / "a.trec",
                    "--k", 3)
    assert result.exit_code == 0, result.output
    result = invoke("search", "--index", tmp_path / "index", "--queries", beir_dir, "--out", tmp_path / "b.trec",
                    "--k", 3, "--dim", 16)
    assert result.exit_code == 0, result.output
    assert run_pairs(tmp_path / "a.trec") == run_pairs(tmp_path / "b.trec")
    result = invoke("search", "--index", tmp_path / "index", "--queries", beir_dir, "--out", tmp_path / "c.trec",
                    "--dim", 32)
    assert result.exit_code == 2 and "--dim 32" in result.output and "must agree" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "c.trec").exists()


@pytest.mark.parametrize("kind", ["binary", "binary-hnsw", "int8", "ivfpq"])
def test_compact_index_rescored_over_every_document_writes_the_flat_run(beir_dir, tmp_path, full_emb, kind):
    assert invoke("index", full_emb, "--out", tmp_path / "flat").exit_code == 0
    result = invoke("index", full_emb, "--out", tmp_path / "compact", "--type", kind, "--pq-m", 4, "--hnsw-m", 4)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "compact" / RESCORE_FILE).is_file()
    for name, extra in (("flat", ()), ("compact", ("--rescore-factor", len(DOCS)))):
        result = invoke("search", "--index", tmp_path / name, "--queries", beir_dir, "--out",
                        tmp_path / f"{name}.trec", "--k", 3, *extra)
        assert result.exit_code == 0, result.output
    assert run_pairs(tmp_path / "compact.trec") == run_pairs(tmp_path / "flat.trec")
    assert {query_id for query_id, _doc in run_pairs(tmp_path / "flat.trec")} == set(QUERIES)


def test_rescoring_an_index_without_its_float_store_is_one_line(beir_dir, tmp_path, full_emb):
    result = invoke("index", full_emb, "--out", tmp_path / "bin", "--type", "binary", "--rescore-store", "none")
    assert result.exit_code == 0, result.output
    result = invoke("search", "--index", tmp_path / "bin", "--queries", beir_dir, "--out", tmp_path / "x.trec",
                    "--rescore-factor", 4)
    assert result.exit_code == 2 and "no float vectors to rescore with" in result.output
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert f"{len(QUERIES)}/{len(QUERIES)}" not in result.output  # refused before any query is encoded
    assert not (tmp_path / "x.trec").exists()
