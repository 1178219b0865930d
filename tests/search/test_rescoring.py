from __future__ import annotations

import numpy as np
import pytest

from llara_cli.search import rescoring
from llara_cli.search.rescoring import DEFAULT_MIN_CANDIDATES, candidate_count, rescore_candidates


def test_rescoring_orders_candidates_by_exact_inner_product_and_drops_missing_ones():
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((50, 8)).astype(np.float32)
    queries = rng.standard_normal((3, 8)).astype(np.float32)
    rows = np.array([[4, 9, 1, -1], [0, 1, 2, 3], [49, -1, -1, -1]], dtype=np.int64)
    scores, best = rescore_candidates(vectors, queries, rows, 3)
    for query in range(3):
        present = rows[query][rows[query] >= 0]
        exact = queries[query] @ vectors[present].T
        order = np.argsort(-exact, kind="stable")[:3]
        assert best[query][:len(order)].tolist() == present[order].tolist()
        np.testing.assert_allclose(scores[query][:len(order)], exact[order], rtol=1e-6)
    assert best[2].tolist()[1:] == [-1, -1] and np.isneginf(scores[2][1:]).all()


def test_rescoring_a_memory_mapped_fp16_store_in_small_steps_gives_the_same_result(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((200, 16)).astype(np.float16)
    np.save(tmp_path / "store.npy", vectors)
    mapped = np.load(tmp_path / "store.npy", mmap_mode="r")
    queries = rng.standard_normal((10, 16)).astype(np.float32)
    rows = rng.integers(0, 200, size=(10, 20))
    whole = rescore_candidates(vectors, queries, rows, 5)
    monkeypatch.setattr(rescoring, "RESCORE_MAX_BYTES", 16 * 20 * 4 * 3)  # three queries per gather
    stepped = rescore_candidates(mapped, queries, rows, 5)
    assert np.array_equal(whole[1], stepped[1]) and np.array_equal(whole[0], stepped[0])


@pytest.mark.parametrize(("k", "factor", "explicit", "ntotal", "expected"), [
    (10, 10, False, 10**6, DEFAULT_MIN_CANDIDATES),  # a small k still rescores enough by default
    (100, 10, False, 10**6, 1000),
    (10, 10, True, 10**6, 100),  # an explicit factor is taken as given
    (10, 1, False, 10**6, 10),
    (1000, 10, False, 5000, 5000),  # never more than the index holds
])
def test_candidate_count(k, factor, explicit, ntotal, expected):
    assert candidate_count(k, factor, explicit, ntotal) == expected
