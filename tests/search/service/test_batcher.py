"""QueryBatcher: concurrent queries share forward passes and get what one-at-a-time search gives them."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from llara_cli.search.dense import DenseSearcher
from llara_cli.search.service.batcher import QueryBatcher
from tests.search.service.conftest import ALL_QUERIES


@pytest.fixture(scope="module")
def searcher(served_collection):
    return DenseSearcher(served_collection["index"], dtype="fp32")


def test_concurrent_queries_are_batched_and_answered_as_alone(searcher):
    batcher = QueryBatcher(searcher, max_batch=8, wait_s=0.2)
    texts = list(ALL_QUERIES.values())
    try:
        with ThreadPoolExecutor(len(texts)) as pool:
            futures = list(pool.map(lambda text: batcher.submit(text, 3 if len(text) % 2 else 4), texts))
            answers = [future.result(timeout=30) for future in futures]
    finally:
        batcher.close()
    for text, answer in zip(texts, answers):
        assert answer == searcher.search(text, k=3 if len(text) % 2 else 4)
    assert batcher.stats.queries == len(texts) and 1 < batcher.stats.largest <= 8
    assert batcher.stats.batches < len(texts)


def test_max_batch_one_answers_one_query_per_pass(searcher):
    batcher = QueryBatcher(searcher, max_batch=1, wait_s=0.05)
    try:
        futures = [batcher.submit(text, 2) for text in list(ALL_QUERIES.values())[:5]]
        assert all(len(future.result(timeout=30)) == 2 for future in futures)
    finally:
        batcher.close()
    assert batcher.stats.batches == 5 and batcher.stats.largest == 1


def test_close_finishes_the_queued_queries_and_cancelled_ones_are_skipped(searcher):
    batcher = QueryBatcher(searcher, max_batch=4, wait_s=0.3)
    futures = [batcher.submit(text, 2) for text in list(ALL_QUERIES.values())[:6]]
    assert futures[5].cancel()  # still queued: its caller gave up
    batcher.close()
    assert all(len(future.result(timeout=0)) == 2 for future in futures[:5])
    assert batcher.stats.queries == 5
    with pytest.raises(RuntimeError, match="closed"):
        batcher.submit("protein", 2)


def test_an_encoder_error_reaches_every_caller_of_the_batch(searcher):
    class Broken:
        def encode_queries(self, texts):
            raise ValueError("no model")

    batcher = QueryBatcher(Broken(), max_batch=4, wait_s=0.1)
    futures = [batcher.submit("x", 1), batcher.submit("y", 1)]
    for future in futures:
        with pytest.raises(ValueError, match="no model"):
            future.result(timeout=10)
    batcher.close()
    assert threading.active_count() >= 1
