"""Index options at scale: build time, bytes on disk, peak RSS of build and search, QPS, recall vs exact.

    nice -n 10 python benchmarks/scale.py            # 1M x 1024 float32 (4 GB), 6 options, ~1-2 h on 2 cores
    python benchmarks/scale.py --quick               # 20k x 64: seconds (the test suite runs this)

A synthetic corpus with neighbourhood structure (unit vectors near a 32-dimensional subspace, as
``search_speed.py``) is written in chunks straight into ``--shards`` embedding shard directories
(``embeddings.npy`` through ``numpy.lib.format.open_memmap``, so it never has to fit in memory). Each option
is then built and searched through the library (``build_index``, ``load_index`` + ``search_index``, or
``search_index_shards``) in a **child process of its own**, which reports its own peak resident memory
(``VmHWM`` from ``/proc/self/status``, ``ru_maxrss`` where that is missing) and is killed after
``--time-limit-s`` (recorded as timed out). Options: ``flat`` (exact, one index), ``sharded-flat``
(``--shards`` partial flat indexes searched one at a time: exact), ``flat-fp16``, ``flat-sq8`` (scalar
quantized), ``ivfpq`` and ``hnsw``. Recall@10/@100 is against the exact top 100 of ``flat``.

The compact options (``--options compact``: ``int8``, ``binary``, ``ivfpq`` alone, and ``int8+rescore``,
``binary+rescore``, ``binary-hnsw+rescore``, ``ivfpq+rescore``, whose candidates are rescored with the float
store beside the index at the kind's default factor) are searched for the top 10 (the search the recall goals
are stated for: ``k x factor`` candidates), so they report recall@10 only. Their in-memory bytes
(``index_bytes``: the index, docid and thresholds) are apart from the memory-mapped float store
(``store_bytes``); the MS MARCO projection uses the in-memory bytes. Every option also reports the QPS of one
query at a time (``qps_batch1``, the first ``BATCH1_QUERIES`` queries) beside ``qps`` (all queries in one batch).

    nice -n 10 python benchmarks/scale.py --n-docs 200000 --n-queries 1000 --options flat,compact \
        --out benchmarks/results/scale_compact.json

The JSON (``benchmarks/results/scale.json``, or ``--out``) carries the machine kind and the load average
before and after, and a projection to MS MARCO (8.8M passages) x 4096-d from the measured bytes per vector.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402

from llara_cli.storage.files import write_json  # noqa: E402

RESULT_PATH = REPO_ROOT / "benchmarks" / "results" / "scale.json"
OPTIONS = ("flat", "sharded-flat", "flat-fp16", "flat-sq8", "ivfpq", "hnsw")
COMPACT_OPTIONS = ("int8", "int8+rescore", "binary", "binary+rescore", "binary-hnsw+rescore", "ivfpq+rescore")
ALL_OPTIONS = OPTIONS + COMPACT_OPTIONS
RESCORE_SUFFIX = "+rescore"
COMPACT_K = 10  # the compact options are searched for the top 10
BATCH1_QUERIES = 100
STORE_FILE = "vectors.npy"  # llara_cli.index.rescore_store.RESCORE_FILE
FULL = {"n_docs": 1_000_000, "dim": 1024, "n_queries": 500, "shards": 4, "hnsw_m": 16, "ef_construction": 40,
        "ef_search": 128, "nlist": 1024, "nprobe": 32, "pq_m": 64, "time_limit_s": 2400}
QUICK = {"n_docs": 20_000, "dim": 64, "n_queries": 50, "shards": 4, "hnsw_m": 8, "ef_construction": 40,
         "ef_search": 64, "nlist": 64, "nprobe": 8, "pq_m": 8, "time_limit_s": 300}
CORPUS_KEYS = ("n_docs", "dim", "n_queries", "shards")  # what --update requires to match (index params may differ)
RECALL_DEPTHS = (10, 100)
SEARCH_K = 100
INTRINSIC_DIM = 32
NOISE = 0.1  # isotropic noise relative to the subspace signal, per coordinate (search_speed.py's value)
GENERATE_CHUNK_ROWS = 65_536
SEED = 0
MSMARCO_PASSAGES = 8_841_823
PAPER_DIM = 4096  # LLaMA-2-7B hidden size
MACHINE_RAM_GB = (64, 256)
USABLE_RAM_FRACTION = 0.75  # of a machine's RAM given to one index shard's peak (the rest: OS, queries, model)
MAX_PROJECTED_SHARDS = 256
GIB = 1 << 30
KIB = 1024


# ---------------------------------------------------------------- corpus


def write_corpus(work_dir: Path, n_docs: int, dim: int, n_queries: int, shards: int) -> tuple[list[Path], Path]:
    """``shards`` embedding directories of unit vectors near a subspace, and a queries .npy of the same kind."""
    from llara_cli.encode.embedding_store import EMBEDDINGS_FILE, IDS_FILE, META_FILE, EmbeddingMeta
    from llara_cli.encode.shards import shard_dir_name

    rng = np.random.default_rng(SEED)
    basis = rng.standard_normal((INTRINSIC_DIM, dim), dtype=np.float32) / math.sqrt(INTRINSIC_DIM)  # (intrinsic, dim)

    def vectors(count: int) -> np.ndarray:
        latent = rng.standard_normal((count, INTRINSIC_DIM), dtype=np.float32)  # (count, intrinsic)
        noisy = latent @ basis + NOISE * rng.standard_normal((count, dim), dtype=np.float32)  # (count, dim)
        return noisy / np.linalg.norm(noisy, axis=1, keepdims=True)

    directories = []
    for shard_id in range(shards):
        start, stop = n_docs * shard_id // shards, n_docs * (shard_id + 1) // shards
        directory = work_dir / "corpus" / shard_dir_name(shard_id)
        directory.mkdir(parents=True)
        array = np.lib.format.open_memmap(directory / EMBEDDINGS_FILE, mode="w+", dtype=np.float32,
                                          shape=(stop - start, dim))
        for chunk in range(0, stop - start, GENERATE_CHUNK_ROWS):
            rows = min(GENERATE_CHUNK_ROWS, stop - start - chunk)
            array[chunk:chunk + rows] = vectors(rows)
        array.flush()
        del array
        (directory / IDS_FILE).write_text("".join(f"doc{row}\n" for row in range(start, stop)))
        meta = EmbeddingMeta(model="synthetic", prompt_family="paper", pooling="last", side="passage", dim=dim,
                             max_length=0, normalize=True, count=stop - start, source_sha256="synthetic",
                             shard_id=shard_id, shard_num=shards)
        write_json(directory / META_FILE, meta.to_dict())
        directories.append(directory)
    queries_path = work_dir / "queries.npy"
    np.save(queries_path, vectors(n_queries), allow_pickle=False)
    return directories, queries_path


# ---------------------------------------------------------------- children (one option's build or search)


def peak_rss_bytes() -> int:
    """This process's peak resident set: VmHWM (Linux), else ru_maxrss (KiB on Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * KIB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * KIB


def option_kind(option: str) -> str:
    """The ``llara index --type`` of a benchmark option."""
    return {"sharded-flat": "flat"}.get(option, option.removesuffix(RESCORE_SUFFIX))


def child_build(spec: dict) -> dict:
    from llara_cli.index.faiss_index import build_index

    shard_dirs, out = [Path(path) for path in spec["shard_dirs"]], Path(spec["out"])
    kind = option_kind(spec["option"])
    params = {key: spec[key] for key in ("hnsw_m", "ef_construction", "ef_search", "nlist", "nprobe", "pq_m")}
    if spec["option"] in COMPACT_OPTIONS:  # a float store only where the option rescores
        params["rescore_store"] = "auto" if spec["option"].endswith(RESCORE_SUFFIX) else "none"
    started = time.perf_counter()
    if spec["option"] == "sharded-flat":  # one partial index per embedding shard, built one after another
        for shard_dir in shard_dirs:
            meta = build_index([shard_dir], out / shard_dir.name, kind, partial=True, **params)
    else:
        meta = build_index(shard_dirs, out, kind, **params)
    return {"build_s": round(time.perf_counter() - started, 2), "peak_rss_build_bytes": peak_rss_bytes(),
            "index_params": dict(meta.params)}


def child_search(spec: dict) -> dict:
    from llara_cli.data.runs import rank_results
    from llara_cli.index.faiss_index import load_index
    from llara_cli.search.faiss_search import search_index
    from llara_cli.search.sharded import resolve_index_shards, search_index_shards

    queries = np.load(spec["queries"], allow_pickle=False)  # (n_queries, dim)
    query_ids = [f"q{row}" for row in range(len(queries))]
    k = COMPACT_K if spec["option"] in COMPACT_OPTIONS else SEARCH_K
    batch1_s = None
    if spec["option"] == "sharded-flat":  # loading each shard is part of every search over shards
        started = time.perf_counter()
        directories, _metas = resolve_index_shards([spec["out"]])
        load_s = 0.0
        results = search_index_shards(directories, queries, query_ids, k=k)
        search_s = time.perf_counter() - started
    else:
        started = time.perf_counter()
        index = load_index(spec["out"])
        load_s = time.perf_counter() - started
        search_index(index, queries[:1], query_ids[:1], k=k)  # warm-up: thread pools, BLAS
        started = time.perf_counter()
        results = search_index(index, queries, query_ids, k=k)
        search_s = time.perf_counter() - started
        started = time.perf_counter()
        for row in range(min(BATCH1_QUERIES, len(queries))):
            search_index(index, queries[row:row + 1], query_ids[row:row + 1], k=k)
        batch1_s = time.perf_counter() - started
    ranked = [[int(doc_id[len("doc"):]) for doc_id, _score in rank_results(results[query_id])]  # as a run is written
              for query_id in query_ids]
    np.save(spec["ranked"], np.asarray(ranked, dtype=np.int64), allow_pickle=False)  # (n_queries, k)
    measured = {"load_s": round(load_s, 2), "search_s": round(search_s, 3), "k": k,
                "qps": round(len(queries) / search_s, 1), "peak_rss_search_bytes": peak_rss_bytes()}
    if batch1_s is not None:
        measured["qps_batch1"] = round(min(BATCH1_QUERIES, len(queries)) / batch1_s, 1)
    return measured


def run_child(stage: str, spec: dict, time_limit_s: float) -> dict:
    """Run one stage in a fresh interpreter (its own peak RSS); a timeout or crash is recorded, not raised."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", stage, json.dumps(spec)]
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=time_limit_s, env=environment)
    except subprocess.TimeoutExpired:
        return {"status": f"{stage} timed out after {time_limit_s:.0f} s"}
    if completed.returncode != 0:
        return {"status": f"{stage} failed: {completed.stderr.strip().splitlines()[-1:]}"}
    return json.loads(completed.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- parent


def directory_bytes(path: Path) -> int:
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file())


def recall(ranked: np.ndarray, exact: np.ndarray, depth: int) -> float:
    hits = [len(set(row[:depth].tolist()) & set(truth[:depth].tolist())) for row, truth in zip(ranked, exact)]
    return round(float(np.mean(hits)) / depth, 4)


def baseline_rss_bytes() -> int:
    """Peak RSS of a child that only imports what every child imports (python, numpy, faiss, llara)."""
    code = ("import faiss, numpy, llara_cli.search.sharded, benchmarks.scale as s; "
            "print(s.peak_rss_bytes())")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                               env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    return int(completed.stdout.split()[-1])


def machine_kind() -> dict:
    import platform

    import faiss
    import torch

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"cpu": model, "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cores": os.cpu_count(),
            "ram_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB, 1),
            "faiss": faiss.__version__, "faiss_threads": faiss.omp_get_max_threads(),
            "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def payload_bytes(option: str, dim: int, pq_m: int) -> float:
    """The part of a vector's in-memory index bytes that scales with dim (the rest, ids and links, does not)."""
    per_dim = {"flat": 4, "sharded-flat": 4, "flat-fp16": 2, "flat-sq8": 1, "hnsw": 4, "int8": 1, "binary": 1 / 8,
               "binary-hnsw": 1 / 8}
    kind = option.removesuffix(RESCORE_SUFFIX)
    return pq_m if kind == "ivfpq" else per_dim[kind] * dim


def transient_build_bytes(option: str, n_docs: int, dim: int, nlist: int | None) -> int:
    """What a build holds besides the index: one float32 read chunk and the training sample (library rules)."""
    from llara_cli.index.faiss_types import FLOAT32_BYTES, READ_CHUNK_ROWS, IndexType, index_params, train_rows

    kind = IndexType(option_kind(option))
    params = index_params(kind, n_docs, dim, hnsw_m=1, ef_construction=1, ef_search=1, nlist=nlist, pq_m=None,
                          nprobe=None)
    return (min(READ_CHUNK_ROWS, n_docs) + train_rows(kind, n_docs, dim, params)) * dim * FLOAT32_BYTES


def project(option: str, measured: dict, config: dict) -> dict:
    """MS MARCO x 4096 from this option's measured bytes per vector and peak-RSS-per-index-byte.

    Peak RSS minus the empty child's is split into a part proportional to the index (piece) in memory and the
    build's transient buffers (read chunk, training sample), which are recomputed at 4096-d with the library's
    own rules (default nlist for the IVF kinds). A shard count fits a machine when the larger of build and
    search peak of one shard stays within ``USABLE_RAM_FRACTION`` of its RAM.
    """
    n_docs, dim, pq_m = config["n_docs"], config["dim"], config["pq_m"]
    pieces = config["shards"] if option == "sharded-flat" else 1
    in_memory = measured.get("index_bytes", measured["bytes_on_disk"])  # a float store is memory-mapped, not loaded
    piece_bytes = in_memory / pieces
    search_ratio = (measured["peak_rss_search_bytes"] - measured["baseline_rss_bytes"]) / piece_bytes
    build_excess = measured["peak_rss_build_bytes"] - measured["baseline_rss_bytes"] - transient_build_bytes(
        option, n_docs // pieces, dim, measured.get("index_params", {}).get("nlist", config["nlist"]))
    ratio = max(1.0, search_ratio, build_excess / piece_bytes)
    per_vector = in_memory / n_docs - payload_bytes(option, dim, pq_m) + payload_bytes(option, PAPER_DIM, pq_m)
    index_bytes = per_vector * MSMARCO_PASSAGES
    projection = {"bytes_per_vector": round(per_vector, 1), "index_gb": round(index_bytes / 1e9, 1),
                  "peak_rss_per_index_byte": round(ratio, 2)}

    def peak_bytes(shards: int) -> float:
        return ratio * index_bytes / shards + transient_build_bytes(option, MSMARCO_PASSAGES // shards, PAPER_DIM, None)

    projection["one_index_peak_gb"] = round(peak_bytes(1) / 1e9, 1)
    for ram_gb in MACHINE_RAM_GB:
        shards = next((count for count in range(1, MAX_PROJECTED_SHARDS + 1)
                       if peak_bytes(count) <= ram_gb * 1e9 * USABLE_RAM_FRACTION), None)
        projection[f"shards_for_{ram_gb}gb"] = shards
        projection[f"shard_gb_for_{ram_gb}gb"] = round(index_bytes / shards / 1e9, 1) if shards else None
    return projection


def benchmark(config: dict, work_dir: Path, options: list[str]) -> dict:
    load_before = [round(load, 2) for load in os.getloadavg()]
    started = time.perf_counter()
    shard_dirs, queries = write_corpus(work_dir, config["n_docs"], config["dim"], config["n_queries"],
                                       config["shards"])
    generate_s = round(time.perf_counter() - started, 1)
    baseline = baseline_rss_bytes()
    results: dict[str, dict] = {}
    exact = None
    for option in options:
        out = work_dir / "indexes" / option
        spec = {**config, "option": option, "shard_dirs": [str(path) for path in shard_dirs], "out": str(out),
                "queries": str(queries), "ranked": str(work_dir / f"{option}.ranked.npy")}
        measured = {"baseline_rss_bytes": baseline, **run_child("build", spec, config["time_limit_s"])}
        if "status" not in measured:
            measured["bytes_on_disk"] = directory_bytes(out)
            store_bytes = sum(path.stat().st_size for path in out.rglob(STORE_FILE))
            if store_bytes or option in COMPACT_OPTIONS:
                measured["index_bytes"] = measured["bytes_on_disk"] - store_bytes
                measured["store_bytes"] = store_bytes
            measured.update(run_child("search", spec, config["time_limit_s"]))
        if "status" not in measured:
            ranked = np.load(spec["ranked"], allow_pickle=False)
            if option == "flat":
                exact = ranked
            if exact is not None:
                measured.update({f"recall@{depth}": recall(ranked, exact, depth) for depth in RECALL_DEPTHS
                                 if depth <= ranked.shape[1]})
        shutil.rmtree(out, ignore_errors=True)  # keep the disk footprint to the corpus and one index
        results[option] = measured
        print(json.dumps({option: measured}), flush=True)
    return reproject({
        "config": {**config, "search_k": SEARCH_K, "intrinsic_dim": INTRINSIC_DIM, "noise": NOISE},
        "corpus_bytes": directory_bytes(work_dir / "corpus"), "generate_s": generate_s,
        "results": results, "machine": machine_kind(),
        "load_average_before": load_before, "load_average_after": [round(load, 2) for load in os.getloadavg()],
        "total_s": round(time.perf_counter() - started, 1),
    })


def reproject(result: dict) -> dict:
    """(Re)derive every measured option's MS MARCO x 4096 projection and its search RAM against flat's."""
    flat = result["results"].get("flat", {})
    for option, measured in result["results"].items():
        if "status" not in measured and "peak_rss_search_bytes" in measured:
            measured["msmarco_4096_projection"] = project(option, measured, result["config"])
            if "peak_rss_search_bytes" in flat:
                measured["search_ram_vs_flat"] = search_ram_ratios(flat, measured)
    return result


def search_ram_ratios(flat: dict, measured: dict) -> dict:
    """How many times less search memory than flat: of the peak RSS, and of what the search adds to an empty
    child's (``baseline_rss_bytes``: python, numpy, faiss and llara imported, the same for every option)."""
    baseline = measured["baseline_rss_bytes"]
    return {"peak_rss": round(flat["peak_rss_search_bytes"] / measured["peak_rss_search_bytes"], 2),
            "above_baseline": round((flat["peak_rss_search_bytes"] - baseline)
                                    / max(1, measured["peak_rss_search_bytes"] - baseline), 2)}


def ram_ratio(measured: dict) -> str:
    ratios = measured.get("search_ram_vs_flat")
    return f"{ratios['peak_rss']:.1f}x ({ratios['above_baseline']:.1f}x)" if ratios else ""


def markdown_tables(result: dict) -> str:
    """The measured table and the MS MARCO x 4096 projection, as in ``docs/benchmarks.md``."""
    def gb(value: float) -> str:
        return f"{value / 1e9:.2f}"

    lines = ["| option | build | on disk (GB) | in-memory bytes / vector | peak RSS build (GB) | peak RSS search (GB) "
             "| search RAM: flat / this (above baseline) | QPS | QPS batch 1 | recall@10 | recall@100 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    n_docs = result["config"]["n_docs"]
    for option, measured in result["results"].items():
        if "status" in measured:
            lines.append(f"| {option} | {measured['status']} | | | | | | | | | |")
            continue
        lines.append(
            f"| {option} | {measured['build_s']:.0f} s | {gb(measured['bytes_on_disk'])} "
            f"| {measured.get('index_bytes', measured['bytes_on_disk']) / n_docs:.0f} "
            f"| {gb(measured['peak_rss_build_bytes'])} "
            f"| {gb(measured['peak_rss_search_bytes'])} | {ram_ratio(measured)} "
            f"| {measured['qps']} | {measured.get('qps_batch1', '')} "
            f"| {measured.get('recall@10', '')} | {measured.get('recall@100', '')} |")
    lines += ["", "| option | bytes / vector | index (GB) | peak RSS / index byte | one index: peak (GB) "
              "| 64 GB machine | 256 GB machine |", "|---|---:|---:|---:|---:|---|---|"]
    for option, measured in result["results"].items():
        projection = measured.get("msmarco_4096_projection")
        if projection is None:
            continue
        fits = ["1 index" if projection[f"shards_for_{ram}gb"] == 1 else
                f"{projection[f'shards_for_{ram}gb']} shards of {projection[f'shard_gb_for_{ram}gb']} GB"
                if projection[f"shards_for_{ram}gb"] else "does not fit" for ram in MACHINE_RAM_GB]
        lines.append(f"| {option} | {projection['bytes_per_vector']:.0f} | {projection['index_gb']} "
                     f"| {projection['peak_rss_per_index_byte']} | {projection['one_index_peak_gb']} "
                     f"| {fits[0]} | {fits[1]} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny corpus (the test suite runs this)")
    parser.add_argument("--options", default=",".join(OPTIONS), help="comma-separated subset of "
                        + ", ".join(ALL_OPTIONS) + " ('compact': all the compact ones)")
    parser.add_argument("--n-docs", type=int)
    parser.add_argument("--n-queries", type=int)
    for name in ("hnsw-m", "ef-construction", "ef-search", "nlist", "nprobe"):
        parser.add_argument(f"--{name}", type=int, help="index parameter (default: the mode's)")
    parser.add_argument("--time-limit-s", type=float, help="per build and per search child")
    parser.add_argument("--work-dir", type=Path, help="scratch space for the corpus and indexes (default: a temp dir)")
    parser.add_argument("--out", type=Path, help=f"result JSON (default {RESULT_PATH.relative_to(REPO_ROOT)}; "
                                                 "--quick prints only, unless given)")
    parser.add_argument("--update", action="store_true",
                        help="replace only the options run now in an existing result JSON (each option keeps its run's "
                             "date and load average)")
    parser.add_argument("--table", type=Path, nargs="?", const=RESULT_PATH,
                        help="print the markdown tables of a result JSON (default: the saved one) and exit")
    parser.add_argument("--child", nargs=2, metavar=("STAGE", "SPEC"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.table:
        print(markdown_tables(reproject(json.loads(args.table.read_text()))))
        return 0
    if args.child:
        stage, spec = args.child
        print(json.dumps((child_build if stage == "build" else child_search)(json.loads(spec))))
        return 0
    config = dict(QUICK if args.quick else FULL)
    if args.n_docs:
        config["n_docs"] = args.n_docs
    if args.n_queries:
        config["n_queries"] = args.n_queries
    if args.time_limit_s:
        config["time_limit_s"] = args.time_limit_s
    for key in ("hnsw_m", "ef_construction", "ef_search", "nlist", "nprobe"):
        if getattr(args, key) is not None:
            config[key] = getattr(args, key)
    options = [name for option in args.options.split(",")
               for name in (COMPACT_OPTIONS if option.strip() == "compact" else [option.strip()])]
    unknown = sorted(set(options) - set(ALL_OPTIONS))
    if unknown:
        parser.error(f"unknown option(s) {', '.join(unknown)}")
    work_dir = Path(tempfile.mkdtemp(prefix="llara-scale-", dir=args.work_dir))
    try:
        result = benchmark(config, work_dir, options)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    out = args.out or (None if args.quick else RESULT_PATH)
    print(json.dumps(result))
    if out is not None:
        write_json(out, merged_with(out, result) if args.update else result)
    return 0


def merged_with(path: Path, result: dict) -> dict:
    """``result``'s options written over those of the JSON at ``path`` (same config required)."""
    if not path.is_file():
        return result
    previous = json.loads(path.read_text())
    if any(previous["config"][key] != result["config"][key] for key in CORPUS_KEYS):
        raise SystemExit(f"{path} was measured on another corpus ({', '.join(CORPUS_KEYS)}); rerun without --update")
    run = {key: result[key] for key in ("machine", "load_average_before", "load_average_after", "total_s")}
    for measured in result["results"].values():
        measured["run"] = run
    previous.setdefault("updates", []).append({"options": sorted(result["results"]), **run})
    previous["results"].update(result["results"])
    return reproject(previous)


if __name__ == "__main__":
    sys.exit(main())
