from __future__ import annotations

import json
import logging

import faiss
import numpy as np
import pytest

from llara_cli.encode.embedding_store import META_FILE, EmbeddingMeta, save_embeddings
from llara_cli.errors import UsageError
from llara_cli.index.faiss_index import (
    DEFAULT_EF_SEARCH,
    DOCID_FILE,
    INDEX_FILE,
    IndexType,
    build_index,
    load_index,
)
from llara_cli.search.faiss_search import search_index

DIM = 16
N_DOCS = 600


def write_set(directory, ids, vectors, shard_id=0, shard_num=1, **overrides):
    meta = EmbeddingMeta(**{
        **dict(model="tiny", prompt_family="paper", pooling="last8", side="passage", dim=vectors.shape[1],
               max_length=64, normalize=True, count=len(ids), source_sha256="abc", shard_id=shard_id,
               shard_num=shard_num),
        **overrides,
    })
    save_embeddings(directory, ids, vectors, meta)
    return directory


def unit_vectors(count, dim=DIM, seed=0):
    vectors = np.random.default_rng(seed).standard_normal((count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture
def corpus():
    return [f"d{index}" for index in range(N_DOCS)], unit_vectors(N_DOCS)


@pytest.fixture
def embedding_dir(tmp_path, corpus):
    return write_set(tmp_path / "emb", *corpus)


def test_index_directory_has_pyserinis_layout(tmp_path, embedding_dir, corpus):
    build_index([embedding_dir], tmp_path / "index")
    assert {path.name for path in (tmp_path / "index").iterdir()} == {INDEX_FILE, DOCID_FILE, META_FILE}
    faiss_index = faiss.read_index(str(tmp_path / "index" / INDEX_FILE))
    assert faiss_index.ntotal == N_DOCS and faiss_index.metric_type == faiss.METRIC_INNER_PRODUCT
    assert (tmp_path / "index" / DOCID_FILE).read_text().splitlines() == corpus[0]
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]  # no temp dir left behind


def test_save_load_round_trip(tmp_path, embedding_dir, corpus):
    written = build_index([embedding_dir], tmp_path / "index", "hnsw", hnsw_m=8, ef_construction=40, ef_search=77)
    loaded = load_index(tmp_path / "index")
    assert loaded.meta == written
    assert loaded.doc_ids == corpus[0] and loaded.ntotal == N_DOCS and loaded.dim == DIM
    assert loaded.index_type is IndexType.HNSW
    assert loaded.faiss_index.hnsw.efSearch == 77  # the stored search parameter is applied
    payload = json.loads((tmp_path / "index" / META_FILE).read_text())
    assert payload["index_type"] == "hnsw" and payload["index_params"]["ef_search"] == 77
    assert payload["count"] == N_DOCS and payload["model"] == "tiny" and "llara_version" in payload


def test_shards_merge_into_the_unsharded_index(tmp_path, corpus):
    ids, vectors = corpus
    whole = write_set(tmp_path / "whole", ids, vectors)
    bounds = [0, 150, 400, N_DOCS]
    shards = [
        write_set(tmp_path / f"shard{shard}", ids[start:stop], vectors[start:stop], shard_id=shard, shard_num=3)
        for shard, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:]))
    ]
    build_index([whole], tmp_path / "whole-index")
    build_index([shards[2], shards[0], shards[1]], tmp_path / "sharded-index")  # any order: merged by shard id
    whole_index, sharded_index = load_index(tmp_path / "whole-index"), load_index(tmp_path / "sharded-index")
    assert sharded_index.doc_ids == ids
    queries = unit_vectors(5, seed=1)
    query_ids = [f"q{index}" for index in range(5)]
    assert search_index(sharded_index, queries, query_ids, k=10) == search_index(whole_index, queries, query_ids, k=10)


def test_overlapping_shards_are_refused(tmp_path, corpus):
    ids, vectors = corpus
    first = write_set(tmp_path / "a", ids[:300], vectors[:300], shard_id=0, shard_num=2)
    second = write_set(tmp_path / "b", ids[300:], vectors[300:], shard_id=0, shard_num=2)
    with pytest.raises(UsageError, match="are both shard 0 of 2"):
        build_index([first, second], tmp_path / "index")
    third = write_set(tmp_path / "c", ids[299:], vectors[299:], shard_id=1, shard_num=2)
    with pytest.raises(UsageError, match="document d299 is in both"):
        build_index([first, third], tmp_path / "index")
    assert not (tmp_path / "index").exists()


def test_incompatible_shards_are_refused_naming_the_field(tmp_path, corpus):
    ids, vectors = corpus
    first = write_set(tmp_path / "a", ids[:300], vectors[:300], shard_id=0, shard_num=2)
    second = write_set(tmp_path / "b", ids[300:], vectors[300:], shard_id=1, shard_num=2, pooling="mean")
    with pytest.raises(UsageError, match=r"cannot combine .*a and .*b: pooling 'last8' vs 'mean'"):
        build_index([first, second], tmp_path / "index")


def test_existing_output_needs_overwrite(tmp_path, embedding_dir):
    build_index([embedding_dir], tmp_path / "index")
    with pytest.raises(UsageError, match="already exists.*--overwrite"):
        build_index([embedding_dir], tmp_path / "index", "hnsw")
    build_index([embedding_dir], tmp_path / "index", "hnsw", overwrite=True)
    assert load_index(tmp_path / "index").index_type is IndexType.HNSW
    with pytest.raises(UsageError, match="would replace the input"):
        build_index([embedding_dir], embedding_dir, overwrite=True)


def test_query_embeddings_cannot_be_indexed(tmp_path, corpus):
    queries = write_set(tmp_path / "q", *corpus, side="query")
    with pytest.raises(UsageError, match="query embeddings; an index needs passage"):
        build_index([queries], tmp_path / "index")


def test_ivfpq_builds_and_finds_documents_by_their_own_vector(tmp_path, embedding_dir, corpus):
    meta = build_index([embedding_dir], tmp_path / "index", "ivfpq", pq_m=8)
    assert meta.params["nlist"] == N_DOCS // 39 and meta.params["pq_m"] == 8 and meta.params["pq_nbits"] == 3
    index = load_index(tmp_path / "index")
    ids, vectors = corpus
    results = search_index(index, vectors[:50], ids[:50], k=5, nprobe=meta.params["nlist"])
    found_self = sum(results[doc_id][0][0] == doc_id for doc_id in ids[:50])
    assert found_self >= 45


def test_ivfpq_on_a_tiny_corpus_clamps_nlist_with_a_warning(tmp_path, caplog):
    ids, vectors = [f"d{index}" for index in range(60)], unit_vectors(60)
    directory = write_set(tmp_path / "emb", ids, vectors)
    with caplog.at_level(logging.WARNING, logger="llara_cli.index.faiss_index"):
        meta = build_index([directory], tmp_path / "index", "ivfpq", nlist=1000)
    assert meta.params["nlist"] == 1 and meta.params["pq_nbits"] == 1
    assert "nlist 1000 is too large for 60 vectors" in caplog.text
    results = search_index(load_index(tmp_path / "index"), vectors[:3], ids[:3], k=100)
    assert all(len(hits) == 60 for hits in results.values())


def test_ivfpq_refuses_pq_m_not_dividing_dim(tmp_path, embedding_dir):
    with pytest.raises(UsageError, match="pq_m must divide the embedding dim 16, got 5"):
        build_index([embedding_dir], tmp_path / "index", "ivfpq", pq_m=5)


def test_unknown_index_type_is_refused(tmp_path, embedding_dir):
    with pytest.raises(UsageError, match="unknown index type 'annoy'"):
        build_index([embedding_dir], tmp_path / "index", "annoy")


def test_load_index_explains_missing_and_mismatched_files(tmp_path, embedding_dir):
    build_index([embedding_dir], tmp_path / "index")
    docid = tmp_path / "index" / DOCID_FILE
    docid.write_text("\n".join(docid.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(UsageError, match=f"{DOCID_FILE} has {N_DOCS - 1} ids but the index holds {N_DOCS} vectors"):
        load_index(tmp_path / "index")
    docid.unlink()
    with pytest.raises(UsageError, match=f"missing {DOCID_FILE}"):
        load_index(tmp_path / "index")
    with pytest.raises(UsageError, match="no such index directory"):
        load_index(tmp_path / "nowhere")
    (tmp_path / "index" / DOCID_FILE).write_text("x\n")
    (tmp_path / "index" / INDEX_FILE).write_bytes(b"not faiss")
    with pytest.raises(UsageError, match="not a readable faiss index"):
        load_index(tmp_path / "index")


def test_default_hnsw_parameters_are_stored(tmp_path, embedding_dir):
    meta = build_index([embedding_dir], tmp_path / "index", IndexType.HNSW)
    assert meta.params["ef_search"] == DEFAULT_EF_SEARCH
