"""`llara serve` from the command line: clear usage errors, and SIGTERM under load in a real process."""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import pytest

from tests.cli.conftest import invoke
from tests.conftest import REPO_ROOT
from tests.search.service.conftest import ALL_QUERIES

START_TIMEOUT_S = 120
REQUEST_TIMEOUT_S = 60


def test_serve_needs_something_to_serve():
    result = invoke("serve")
    assert result.exit_code == 2 and "nothing to serve" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(("args", "message"), [
    (["--dense", "tiny"], "--dense takes NAME=VALUE"),
    (["--bm25", "a=x", "--hybrid", "h=a"], "--hybrid takes NAME=BM25_NAME,DENSE_NAME[,WEIGHT]"),
    (["--bm25", "a=x", "--hybrid", "h=a,b"], "'b' is not a served --dense index"),
    (["--bm25", "a=x", "--bm25", "a=y"], "given twice"),
    (["--bm25", "bad name=x"], "index name 'bad name'"),
])
def test_serve_usage_errors_are_one_line(args, message):
    result = invoke("serve", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def _start_server(served_collection) -> tuple[subprocess.Popen, str]:
    from llara_cli.search.service.server import start_serve_process

    args = ["--dense", f"tiny={served_collection['index']}",
               "--bm25", f"tiny-bm25={served_collection['corpus']}", "--hybrid", "both=tiny-bm25,tiny",
               "--fusion-depth", "4", "--port", "0", "--dtype", "fp32", "--max-batch", "64",
               "--batch-wait-ms", "1000"]  # a long window holds the admitted queries until SIGTERM has arrived
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "LLARA_API_KEY": ""}
    return start_serve_process(args, env=env, timeout_s=START_TIMEOUT_S)


@pytest.mark.slow
@pytest.mark.java
def test_sigterm_under_load_answers_every_admitted_request_then_exits_cleanly(served_collection):
    httpx = pytest.importorskip("httpx")
    process, base_url = _start_server(served_collection)
    try:
        answers: dict[str, int] = {}
        queries = list(ALL_QUERIES.items())[:16]

        def ask(query_id: str, text: str, index: str) -> None:
            try:
                response = httpx.post(f"{base_url}/v1/indexes/{index}/search", json={"query": text, "qid": query_id},
                                      timeout=REQUEST_TIMEOUT_S)
                answers[query_id] = response.status_code
            except httpx.HTTPError as error:  # a lost request shows up here
                answers[query_id] = repr(error)

        threads = [threading.Thread(target=ask, args=(query_id, text, "tiny" if number % 2 else "both"))
                   for number, (query_id, text) in enumerate(queries)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + REQUEST_TIMEOUT_S
        while httpx.get(f"{base_url}/health").json()["in_flight"] < len(queries):
            assert time.monotonic() < deadline, "the requests were never all admitted"
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(REQUEST_TIMEOUT_S)
        assert answers == {query_id: 200 for query_id, _ in queries}
        assert process.wait(timeout=REQUEST_TIMEOUT_S) == 0
        assert "stopped: every admitted request was answered" in process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_an_index_that_cannot_be_opened_is_refused_before_a_port_is_bound(tmp_path):
    result = invoke("serve", "--dense", f"tiny={tmp_path / 'missing'}", "--port", "0")
    assert result.exit_code == 2 and "missing" in result.output and "serving on" not in result.output
    assert "Traceback" not in result.output
