from __future__ import annotations

import json

import faiss
import numpy as np
import pytest

from llara_cli.encode.embedding_store import EMBEDDINGS_FILE, META_FILE
from llara_cli.errors import UsageError
from llara_cli.index.faiss_index import DOCID_FILE, INDEX_FILE, IndexType, build_index, load_index
from llara_cli.index.quantized import THRESHOLDS_FILE, BinarySignIndex, packed_bytes, sign_bits
from llara_cli.index.rescore_store import RESCORE_FILE
from llara_cli.search.faiss_search import search_rows
from tests.index.test_faiss_index import unit_vectors, write_set

DIM = 20  # not a multiple of 8: the sign codes are padded
N_DOCS = 500


@pytest.fixture
def corpus():
    return [f"d{index}" for index in range(N_DOCS)], unit_vectors(N_DOCS, DIM, seed=3)


@pytest.fixture
def embedding_dir(tmp_path, corpus):
    return write_set(tmp_path / "emb", *corpus)


def test_sign_bits_are_the_packed_comparisons_with_the_thresholds():
    rows = np.array([[0.5, -1.0, 2.0, 0.0, 3.0, -2.0, 1.0, 1.0, -0.1]], dtype=np.float32)
    thresholds = np.zeros(9, dtype=np.float32)
    codes = sign_bits(rows, thresholds)
    assert codes.shape == (1, packed_bytes(9)) == (1, 2)
    assert np.unpackbits(codes, axis=1)[0, :9].tolist() == [1, 0, 1, 0, 1, 0, 1, 1, 0]
    assert np.unpackbits(codes, axis=1)[0, 9:].tolist() == [0] * 7  # padding


def test_binary_scores_are_the_inner_products_of_the_plus_minus_one_codes(corpus):
    _ids, vectors = corpus
    index = BinarySignIndex.new(DIM)
    index.train(vectors)
    index.add(vectors)
    queries = unit_vectors(5, DIM, seed=9)
    scores, rows = index.search(queries, 7)
    signs = lambda x: np.where(x > index.thresholds, 1.0, -1.0)  # noqa: E731
    brute = signs(queries) @ signs(vectors).T  # (5, N_DOCS)
    for query, (query_scores, query_rows) in enumerate(zip(scores, rows)):
        assert np.array_equal(query_scores, brute[query, query_rows])
        assert query_scores[0] == brute[query].max()  # exhaustive Hamming search finds the best code


@pytest.mark.parametrize("kind", ["binary", "binary-hnsw", "int8"])
def test_compact_index_round_trips_with_its_float_store(tmp_path, embedding_dir, corpus, kind):
    meta = build_index([embedding_dir], tmp_path / "index", kind, hnsw_m=8)
    names = {path.name for path in (tmp_path / "index").iterdir()}
    assert {INDEX_FILE, DOCID_FILE, META_FILE, RESCORE_FILE} <= names
    assert (THRESHOLDS_FILE in names) == kind.startswith("binary")
    stored = np.load(tmp_path / "index" / RESCORE_FILE)
    assert np.array_equal(stored, corpus[1])  # the float copy is the embeddings in row order
    loaded = load_index(tmp_path / "index")
    assert loaded.meta == meta and loaded.index_type is IndexType(kind) and loaded.dim == DIM
    assert meta.params["rescore_store"] == "float32"
    if kind.startswith("binary"):  # a faiss binary index: faiss.read_index_binary opens it, read_index does not
        assert faiss.read_index_binary(str(tmp_path / "index" / INDEX_FILE)).ntotal == N_DOCS
        assert loaded.faiss_index.code_size == packed_bytes(DIM) == 3


@pytest.mark.parametrize("kind", ["binary", "binary-hnsw", "int8", "ivfpq"])
def test_rescored_compact_search_finds_the_exact_top_10(tmp_path, embedding_dir, corpus, kind):
    build_index([embedding_dir], tmp_path / "index", kind, hnsw_m=8, nlist=4, pq_m=4)
    exact_index = build_index([embedding_dir], tmp_path / "flat", "flat") and load_index(tmp_path / "flat")
    index = load_index(tmp_path / "index")
    queries = unit_vectors(30, DIM, seed=11)
    exact_scores, exact_rows = search_rows(exact_index, queries, 10)
    scores, rows = search_rows(index, queries, 10, rescore_factor=N_DOCS // 10)  # every document rescored
    assert np.array_equal(rows, exact_rows)
    assert np.array_equal(scores, exact_scores)  # fp32 store: the flat index's own scores
    _unrescored_scores, unrescored_rows = search_rows(index, queries, 10, rescore_factor=1)
    assert not np.array_equal(unrescored_rows, exact_rows)  # the codes alone lose some of the order


def test_fp16_store_halves_the_copy_and_keeps_the_order(tmp_path, embedding_dir):
    build_index([embedding_dir], tmp_path / "index", "binary", rescore_store="fp16")
    store = np.load(tmp_path / "index" / RESCORE_FILE, mmap_mode="r")
    assert store.dtype == np.float16
    index = load_index(tmp_path / "index")
    assert index.rescore_vectors.dtype == np.float16


def test_rescoring_without_a_float_store_is_refused(tmp_path, embedding_dir):
    build_index([embedding_dir], tmp_path / "index", "binary", rescore_store="none")
    index = load_index(tmp_path / "index")
    assert index.rescore_vectors is None
    queries = unit_vectors(2, DIM, seed=1)
    with pytest.raises(UsageError, match="no float vectors to rescore with"):
        search_rows(index, queries, 10, rescore_factor=4)
    _scores, rows = search_rows(index, queries, 10)  # without an explicit factor: the codes' own order
    assert rows.shape == (2, 10)


def test_a_float_kind_stores_nothing_unless_asked(tmp_path, embedding_dir):
    build_index([embedding_dir], tmp_path / "flat", "flat")
    assert not (tmp_path / "flat" / RESCORE_FILE).exists()
    build_index([embedding_dir], tmp_path / "hnsw", "hnsw", hnsw_m=8, rescore_store="fp32")
    assert (tmp_path / "hnsw" / RESCORE_FILE).is_file()


def test_binary_index_from_non_finite_vectors_is_refused_and_nothing_is_overwritten(tmp_path, corpus):
    ids, vectors = corpus
    emb = write_set(tmp_path / "emb", ids, vectors)
    build_index([emb], tmp_path / "index", "binary")
    before = (tmp_path / "index" / INDEX_FILE).read_bytes()
    raw = np.load(emb / EMBEDDINGS_FILE)
    raw[17, 3] = np.nan
    np.save(emb / EMBEDDINGS_FILE, raw)
    with pytest.raises(UsageError, match="row 17 .*NaN or infinite"):
        build_index([emb], tmp_path / "index", "binary", overwrite=True)
    assert (tmp_path / "index" / INDEX_FILE).read_bytes() == before
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".index")]


def test_binary_training_refuses_non_finite_vectors():
    index = BinarySignIndex.new(4)
    with pytest.raises(UsageError, match="NaN or infinite"):
        index.train(np.array([[0.0, np.inf, 1.0, 2.0]], dtype=np.float32))


def test_missing_thresholds_file_is_a_one_line_error(tmp_path, embedding_dir):
    build_index([embedding_dir], tmp_path / "index", "binary")
    (tmp_path / "index" / THRESHOLDS_FILE).unlink()
    with pytest.raises(UsageError, match=f"missing {THRESHOLDS_FILE}"):
        load_index(tmp_path / "index")


def test_int8_ranges_are_calibrated_not_min_max(tmp_path, corpus):
    ids, vectors = corpus
    vectors = vectors.copy()
    vectors[0] *= 40.0  # one outlier row stretches min/max ranges
    emb = write_set(tmp_path / "emb", ids, vectors, normalize=False)
    build_index([emb], tmp_path / "int8", "int8", rescore_store="none")
    build_index([emb], tmp_path / "sq8", "flat-sq8")
    queries = unit_vectors(50, DIM, seed=5)
    exact = queries @ vectors[1:].T
    errors = {}
    for kind in ("int8", "sq8"):
        codes = load_index(tmp_path / kind).faiss_index
        decoded = codes.sa_decode(codes.sa_encode(vectors[1:]))
        errors[kind] = np.abs(queries @ decoded.T - exact).mean()
    assert errors["int8"] < errors["sq8"] / 2
    payload = json.loads((tmp_path / "int8" / META_FILE).read_text())
    assert payload["index_type"] == "int8" and "rescore_store" not in payload["index_params"]


def test_int8_builds_are_identical_run_to_run(tmp_path):
    """faiss trains quantile ranges in parallel with a race at this size (5,183 x 576 once gave ranges 0.54 apart
    and an int8 top-10 overlap of 0.46 instead of 0.98): llara trains them on one thread."""
    count, dim = 5183, 576  # SciFact's passages x smollm2-135m's dim: the race showed here, not at 3,000 x 256
    vectors = unit_vectors(count, dim, seed=11)
    emb = write_set(tmp_path / "emb", [f"d{row}" for row in range(count)], vectors)
    threads, builds = faiss.omp_get_max_threads(), []
    for build in range(3):
        build_index([emb], tmp_path / f"int8-{build}", "int8", rescore_store="none")
        builds.append((tmp_path / f"int8-{build}" / INDEX_FILE).read_bytes())
    assert builds[0] == builds[1] == builds[2]
    assert faiss.omp_get_max_threads() == threads  # restored: searches keep every thread


def test_binary_index_shards_rescored_merge_into_the_flat_run(tmp_path, corpus):
    from llara_cli.search.faiss_search import search_index
    from llara_cli.search.sharded import resolve_index_shards, search_index_shards

    ids, vectors = corpus
    bounds = [0, 200, N_DOCS]
    for shard, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:])):
        emb = write_set(tmp_path / f"emb{shard}", ids[start:stop], vectors[start:stop], shard_id=shard, shard_num=2)
        build_index([emb], tmp_path / "shards" / f"shard-{shard}", "binary", partial=True)
    whole = write_set(tmp_path / "whole", ids, vectors)
    build_index([whole], tmp_path / "flat", "flat")
    queries = unit_vectors(12, DIM, seed=21)
    query_ids = [f"q{row}" for row in range(12)]
    directories, _metas = resolve_index_shards([tmp_path / "shards"])
    merged = search_index_shards(directories, queries, query_ids, k=5, rescore_factor=N_DOCS // 5)
    assert merged == search_index(load_index(tmp_path / "flat"), queries, query_ids, k=5)
