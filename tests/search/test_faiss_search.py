from __future__ import annotations

import faiss
import numpy as np
import pytest

from llara_cli.encode.embedding_store import EmbeddingMeta, save_embeddings
from llara_cli.errors import UsageError
from llara_cli.index.faiss_index import build_index, load_index
from llara_cli.search.faiss_search import FLAT_BLAS_MIN_QUERIES, search_index

DIM = 16
N_DOCS = 2000
N_QUERIES = 50
SCORE_TOLERANCE = 1e-5


def unit_vectors(count, seed):
    vectors = np.random.default_rng(seed).standard_normal((count, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def make_meta(**overrides):
    fields = dict(model="tiny", prompt_family="paper", pooling="last8", side="passage", dim=DIM, max_length=64,
                  normalize=True, count=N_DOCS, source_sha256="abc")
    return EmbeddingMeta(**{**fields, **overrides})


@pytest.fixture(scope="module")
def corpus():
    return [f"d{index}" for index in range(N_DOCS)], unit_vectors(N_DOCS, seed=0)


@pytest.fixture(scope="module")
def queries():
    return [f"q{index}" for index in range(N_QUERIES)], unit_vectors(N_QUERIES, seed=1)


@pytest.fixture(scope="module")
def index_dirs(tmp_path_factory, corpus):
    root = tmp_path_factory.mktemp("dense")
    save_embeddings(root / "emb", *corpus, make_meta())
    build_index([root / "emb"], root / "flat")
    build_index([root / "emb"], root / "hnsw", "hnsw", hnsw_m=16, ef_construction=100, ef_search=128)
    build_index([root / "emb"], root / "ivfpq", "ivfpq", nlist=16, pq_m=8, nprobe=16)
    return root


def brute_force(doc_vectors, query_vectors, k):
    scores = query_vectors @ doc_vectors.T  # (n_queries, n_docs)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # (n_queries, k)
    return order, np.take_along_axis(scores, order, axis=1)


@pytest.mark.parametrize("batch_size", [1, 7, 1024])
def test_flat_search_equals_brute_force(index_dirs, corpus, queries, batch_size):
    doc_ids, doc_vectors = corpus
    query_ids, query_vectors = queries
    results = search_index(load_index(index_dirs / "flat"), query_vectors, query_ids, k=20, batch_size=batch_size)
    order, scores = brute_force(doc_vectors, query_vectors, 20)
    assert list(results) == query_ids
    for row, query_id in enumerate(query_ids):
        found_ids = [doc_id for doc_id, _score in results[query_id]]
        found_scores = np.array([score for _doc_id, score in results[query_id]])
        assert np.allclose(found_scores, scores[row], atol=SCORE_TOLERANCE)
        for position, doc_id in enumerate(found_ids):  # same ids, except where two scores tie
            expected = doc_ids[order[row, position]]
            assert doc_id == expected or abs(found_scores[position] - scores[row, position]) < SCORE_TOLERANCE


def test_flat_search_uses_blas_for_few_queries(index_dirs, queries):
    search_index(load_index(index_dirs / "flat"), queries[1][:2], queries[0][:2], k=3)
    assert faiss.cvar.distance_compute_blas_threshold == FLAT_BLAS_MIN_QUERIES * DIM


def test_hnsw_recall_at_10(index_dirs, corpus, queries):
    query_ids, query_vectors = queries
    results = search_index(load_index(index_dirs / "hnsw"), query_vectors, query_ids, k=10)
    order, _scores = brute_force(corpus[1], query_vectors, 10)
    hits = sum(
        len({doc_id for doc_id, _score in results[query_id]} & {corpus[0][column] for column in order[row]})
        for row, query_id in enumerate(query_ids)
    )
    assert hits / (10 * N_QUERIES) >= 0.95


def test_search_time_parameters_override_the_stored_ones_for_one_call(index_dirs, queries):
    index = load_index(index_dirs / "hnsw")
    query_ids, query_vectors = queries
    search_index(index, query_vectors, query_ids, k=10, ef_search=16)
    assert index.faiss_index.hnsw.efSearch == 128
    ivfpq = load_index(index_dirs / "ivfpq")
    one_list = search_index(ivfpq, query_vectors, query_ids, k=N_DOCS, nprobe=1)
    assert all(0 < len(hits) < N_DOCS for hits in one_list.values())  # faiss' -1 padding is dropped
    assert all(len(hits) == N_DOCS for hits in search_index(ivfpq, query_vectors, query_ids, k=N_DOCS).values())


def test_k_larger_than_the_index_is_clamped(index_dirs, queries):
    results = search_index(load_index(index_dirs / "flat"), queries[1][:2], queries[0][:2], k=N_DOCS * 10)
    assert [len(hits) for hits in results.values()] == [N_DOCS, N_DOCS]


def test_query_dimension_must_match(index_dirs):
    with pytest.raises(UsageError, match=rf"query vectors have dim 8 but the index .*flat has dim {DIM}"):
        search_index(load_index(index_dirs / "flat"), np.zeros((1, 8), dtype=np.float32), ["q"])


def test_query_ids_must_match_the_vectors(index_dirs, queries):
    index = load_index(index_dirs / "flat")
    with pytest.raises(UsageError, match="1 query ids for 2 query vectors"):
        search_index(index, queries[1][:2], ["q"])
    with pytest.raises(UsageError, match="not unique"):
        search_index(index, queries[1][:2], ["q", "q"])
