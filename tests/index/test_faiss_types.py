"""Scalar-quantized indexes (fp16, 8-bit; flat and IVF), fp16 embedding stores and the bounded training sample."""
from __future__ import annotations

import faiss
import numpy as np
import pytest

from llara_cli.encode.embedding_store import EmbeddingMeta, load_embeddings, save_embeddings
from llara_cli.errors import UsageError
from llara_cli.index.faiss_index import IndexType, build_index, load_index
from llara_cli.index.faiss_types import iter_float32_chunks, max_train_rows, training_sample
from llara_cli.search.faiss_search import search_index

DIM = 32
N_DOCS = 3000
N_QUERIES = 60
INTRINSIC_DIM = 8
K = 10
NPY_HEADER_MAX_BYTES = 256
FAISS_CLASSES = {
    IndexType.FLAT_FP16: faiss.IndexScalarQuantizer, IndexType.FLAT_SQ8: faiss.IndexScalarQuantizer,
    IndexType.IVF_FP16: faiss.IndexIVFScalarQuantizer, IndexType.IVF_SQ8: faiss.IndexIVFScalarQuantizer,
}
MIN_RECALL_AT_10 = {IndexType.FLAT_FP16: 0.99, IndexType.FLAT_SQ8: 0.9, IndexType.IVF_FP16: 0.9,
                    IndexType.IVF_SQ8: 0.85}


def structured(count, seed):
    """Unit vectors near a low-dimensional subspace: real neighbourhoods, like real embeddings."""
    rng = np.random.default_rng(seed)
    basis = np.random.default_rng(99).standard_normal((INTRINSIC_DIM, DIM)).astype(np.float32)
    vectors = rng.standard_normal((count, INTRINSIC_DIM)).astype(np.float32) @ basis
    vectors += 0.1 * rng.standard_normal((count, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def meta(count=N_DOCS, **overrides):
    return EmbeddingMeta(**{**dict(model="tiny", prompt_family="paper", pooling="last", side="passage", dim=DIM,
                                   max_length=64, normalize=True, count=count, source_sha256="abc"), **overrides})


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("kinds")
    ids, vectors = [f"d{index}" for index in range(N_DOCS)], structured(N_DOCS, seed=0)
    save_embeddings(root / "emb", ids, vectors, meta())
    build_index([root / "emb"], root / "flat")
    query_ids, queries = [f"q{index}" for index in range(N_QUERIES)], structured(N_QUERIES, seed=1)
    exact = search_index(load_index(root / "flat"), queries, query_ids, k=K)
    return root, ids, vectors, query_ids, queries, exact


def recall_at_k(results, exact):
    return np.mean([len({doc for doc, _ in results[query]} & {doc for doc, _ in exact[query]}) / K for query in exact])


@pytest.mark.parametrize("kind", sorted(FAISS_CLASSES, key=lambda kind: kind.value))
def test_scalar_quantized_index_round_trips_and_recalls(data, kind):
    root, ids, _vectors, query_ids, queries, exact = data
    written = build_index([root / "emb"], root / kind.value, kind, nlist=16, nprobe=8)
    loaded = load_index(root / kind.value)
    assert loaded.meta == written and loaded.index_type is kind and loaded.doc_ids == ids
    assert type(loaded.faiss_index) is FAISS_CLASSES[kind] and loaded.ntotal == N_DOCS
    if kind in (IndexType.IVF_FP16, IndexType.IVF_SQ8):
        assert loaded.faiss_index.nprobe == 8 and written.params == {"nlist": 16, "nprobe": 8}
    assert recall_at_k(search_index(loaded, queries, query_ids, k=K), exact) >= MIN_RECALL_AT_10[kind]


def test_quantized_indexes_are_smaller_on_disk_in_the_expected_ratio(data):
    root = data[0]
    sizes = {}
    for kind in (IndexType.FLAT, IndexType.FLAT_FP16, IndexType.FLAT_SQ8):
        build_index([root / "emb"], root / f"size-{kind.value}", kind)
        sizes[kind] = (root / f"size-{kind.value}" / "index").stat().st_size
    assert sizes[IndexType.FLAT_FP16] / sizes[IndexType.FLAT] == pytest.approx(0.5, abs=0.01)
    assert sizes[IndexType.FLAT_SQ8] / sizes[IndexType.FLAT] == pytest.approx(0.25, abs=0.01)


def test_ivf_with_every_list_probed_finds_what_its_flat_counterpart_finds(data):
    root, _ids, _vectors, query_ids, queries, _exact = data
    build_index([root / "emb"], root / "ivf-all", IndexType.IVF_FP16, nlist=16, nprobe=16)
    build_index([root / "emb"], root / "flat-fp16-ref", IndexType.FLAT_FP16)
    ivf = search_index(load_index(root / "ivf-all"), queries, query_ids, k=K)
    flat = search_index(load_index(root / "flat-fp16-ref"), queries, query_ids, k=K)
    assert {query: [doc for doc, _ in hits] for query, hits in ivf.items()} == \
        {query: [doc for doc, _ in hits] for query, hits in flat.items()}


def test_fp16_store_round_trips_and_records_its_dtype(tmp_path):
    ids, vectors = [f"d{index}" for index in range(50)], structured(50, seed=2)
    written = save_embeddings(tmp_path / "emb", ids, vectors, meta(count=50), store_dtype="fp16")
    loaded = load_embeddings(tmp_path / "emb")
    assert written.dtype == "float16" and loaded.meta.dtype == "float16" and loaded.vectors.dtype == np.float16
    assert np.array_equal(loaded.vectors, vectors.astype(np.float16))
    assert (tmp_path / "emb" / "embeddings.npy").stat().st_size <= vectors.nbytes // 2 + NPY_HEADER_MAX_BYTES


def test_an_index_of_fp16_embeddings_equals_one_of_the_same_values_in_float32(tmp_path):
    ids, vectors = [f"d{index}" for index in range(400)], structured(400, seed=3)
    save_embeddings(tmp_path / "half", ids, vectors, meta(count=400), store_dtype="fp16")
    save_embeddings(tmp_path / "widened", ids, vectors.astype(np.float16).astype(np.float32), meta(count=400))
    build_index([tmp_path / "half"], tmp_path / "index-half")
    build_index([tmp_path / "widened"], tmp_path / "index-widened")
    queries = structured(5, seed=4)
    assert search_index(load_index(tmp_path / "index-half"), queries, list("abcde"), k=20) == \
        search_index(load_index(tmp_path / "index-widened"), queries, list("abcde"), k=20)


def test_store_dtype_must_be_known_and_meta_must_match_the_file(tmp_path):
    ids, vectors = ["a", "b"], structured(2, seed=5)
    with pytest.raises(UsageError, match="store dtype"):
        save_embeddings(tmp_path / "emb", ids, vectors, meta(count=2), store_dtype="int8")
    save_embeddings(tmp_path / "emb", ids, vectors, meta(count=2), store_dtype="fp16")
    np.save(tmp_path / "emb" / "embeddings.npy", vectors, allow_pickle=False)  # float32 under a float16 meta
    with pytest.raises(UsageError, match="says dtype float16"):
        load_embeddings(tmp_path / "emb")


def test_fp16_overflow_is_refused_before_writing(tmp_path):
    with pytest.raises(UsageError, match="infinite"):
        save_embeddings(tmp_path / "emb", ["a"], np.full((1, DIM), 1e6, dtype=np.float32), meta(count=1),
                        store_dtype="fp16")


def test_training_sample_reads_the_same_rows_from_a_memory_map_as_from_memory(tmp_path):
    first, second = structured(1000, seed=6), structured(700, seed=7).astype(np.float16)
    np.save(tmp_path / "a.npy", first)
    np.save(tmp_path / "b.npy", second)
    mapped = [np.load(tmp_path / "a.npy", mmap_mode="r"), np.load(tmp_path / "b.npy", mmap_mode="r")]
    sample = training_sample(mapped, 500)
    assert sample.dtype == np.float32 and sample.shape == (500, DIM)
    assert np.array_equal(sample, training_sample([first, second], 500))
    everything = np.concatenate([first, second.astype(np.float32)])
    assert np.array_equal(training_sample(mapped, 10_000), everything)  # capped at the total, in row order
    assert np.array_equal(np.concatenate(list(iter_float32_chunks(mapped[1]))), second.astype(np.float32))


def test_training_sample_is_capped_in_bytes():
    assert max_train_rows(10_000_000, 4096) == (2 << 30) // (4 * 4096)
    assert max_train_rows(1000, 4096) == 1000
