"""The Milvus engine on the real embedded milvus-lite (no mock), and the Parquet interchange export."""
from __future__ import annotations

import json

import numpy as np
import pytest

from llara_cli.encode.embedding_store import load_embeddings
from llara_cli.errors import UsageError
from llara_cli.index.engines import ENGINE_FILE, load_engine_meta
from tests.cli.conftest import invoke

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")
pytestmark = pytest.mark.slow  # the embedded Milvus starts a gRPC server per collection file


@pytest.fixture(scope="module")
def milvus_dir(served_collection, tmp_path_factory):
    out = tmp_path_factory.mktemp("milvus") / "tiny-milvus"
    result = invoke("index", served_collection["emb"], "--out", out, "--engine", "milvus")
    assert result.exit_code == 0, result.output
    return out


def test_milvus_flat_search_writes_the_faiss_flat_run_byte_for_byte(served_collection, milvus_dir, tmp_path):
    collection = served_collection["collection"]
    for name, index, extra in (("faiss", served_collection["index"], []),
                               ("milvus", milvus_dir, ["--engine", "milvus"])):
        result = invoke("search", "--index", index, *extra, "--queries", collection, "--out", tmp_path / f"{name}.trec",
                        "--k", 5, "--dtype", "fp32")
        assert result.exit_code == 0, result.output
    assert (tmp_path / "milvus.trec").read_bytes() == (tmp_path / "faiss.trec").read_bytes()
    engine = json.loads((milvus_dir / ENGINE_FILE).read_text())
    assert engine["engine"] == "milvus" and engine["embedded"] and engine["count"] == 6 and "token" not in engine


def test_dense_searcher_opens_a_milvus_index_like_a_faiss_one(served_collection, milvus_dir):
    from llara_cli.search.dense import DenseSearcher

    faiss_searcher = DenseSearcher(served_collection["index"], dtype="fp32")
    milvus_searcher = DenseSearcher(milvus_dir, encoder=faiss_searcher.encoder)
    texts, ids = ["protein gene", "queen war"], ["a", "b"]
    assert milvus_searcher.batch_search(texts, ids, k=6) == faiss_searcher.batch_search(texts, ids, k=6)
    assert milvus_searcher.num_docs == 6
    assert len(milvus_searcher.search("river", k=100)) == 6  # k beyond the collection is clamped
    milvus_searcher.engine.close()


def test_milvus_hnsw_finds_the_exact_top_k_on_a_small_collection(served_collection, tmp_path):
    from llara_cli.index.engines import open_engine_index
    from llara_cli.index.milvus_engine import MilvusIndexType, build_milvus_index

    meta = build_milvus_index([served_collection["emb"]], tmp_path / "hnsw", MilvusIndexType.HNSW, ef_search=64)
    assert meta.params["index_type"] == "hnsw" and meta.params["search_params"] == {"ef": 64}
    embeddings = load_embeddings(served_collection["emb"])
    vectors = np.asarray(embeddings.vectors, dtype=np.float32)  # (6, dim)
    index = open_engine_index(tmp_path / "hnsw")
    try:
        found = index.search(vectors, embeddings.ids, k=3)
    finally:
        index.close()
    exact = vectors @ vectors.T  # (6, 6)
    for row, doc_id in enumerate(embeddings.ids):
        expected = [embeddings.ids[column] for column in np.argsort(-exact[row], kind="stable")[:3]]
        assert [hit for hit, _ in found[doc_id]] == expected


def test_engine_exports_refuse_what_they_cannot_do(served_collection, milvus_dir, tmp_path):
    emb = served_collection["emb"]
    result = invoke("index", emb, "--out", milvus_dir, "--engine", "milvus")
    assert result.exit_code == 2 and "already exists" in result.output
    result = invoke("index", emb, "--out", tmp_path / "x", "--engine", "milvus", "--type", "ivfpq")
    assert result.exit_code == 2 and "builds flat, hnsw, ivf-sq8, not ivfpq" in result.output
    result = invoke("index", emb, "--out", tmp_path / "x", "--engine", "milvus", "--whiten", 8)
    assert result.exit_code == 2 and "faiss options" in result.output
    result = invoke("index", emb, "--out", tmp_path / "x", "--engine-uri", "http://localhost:19530")
    assert result.exit_code == 2 and "apply to --engine milvus" in result.output
    result = invoke("index", emb, "--out", tmp_path / "x", "--engine", "milvus", "--engine-replicas", 2)
    assert result.exit_code == 2 and "apply to a Milvus cluster" in result.output
    result = invoke("search", "--index", served_collection["index"], "--engine", "milvus", "--queries",
                    served_collection["collection"], "--out", tmp_path / "r.trec")
    assert result.exit_code == 2 and "is not a milvus index" in result.output
    assert not (tmp_path / "x").exists() and not (tmp_path / "r.trec").exists()


def test_parquet_export_holds_ids_vectors_and_llaras_meta(served_collection, tmp_path):
    from llara_cli.index.parquet_export import read_parquet_export

    result = invoke("index", served_collection["emb"], "--out", tmp_path / "pq", "--engine", "parquet")
    assert result.exit_code == 0, result.output
    doc_ids, vectors, meta = read_parquet_export(tmp_path / "pq")
    embeddings = load_embeddings(served_collection["emb"])
    assert doc_ids == embeddings.ids
    np.testing.assert_array_equal(vectors, np.asarray(embeddings.vectors, dtype=np.float32))
    assert meta["model"] == embeddings.meta.model and meta["dim"] == vectors.shape[1] and meta["count"] == 6
    assert load_engine_meta(tmp_path / "pq").engine.value == "parquet"
    with pytest.raises(UsageError, match="for other engines to ingest"):
        from llara_cli.search.dense import DenseSearcher

        DenseSearcher(tmp_path / "pq")
