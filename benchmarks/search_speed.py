"""Dense search speed: llara's exact faiss search vs torch matmul + topk, and HNSW vs exact.

    python benchmarks/search_speed.py                  # 100k docs, 1,000 queries, dim 576 (SmolLM2-135M)
    python benchmarks/search_speed.py --n-docs 20000   # quicker

Indexes are built and opened through the library (``save_embeddings`` -> ``build_index`` -> ``load_index``),
so "flat" is the index ``search_index`` runs, with ``configure_flat_search`` applied. Exact search is timed
three ways on the same query batches: faiss as configured by ``dense_search``, faiss with its default BLAS
threshold, and ``torch.topk(q @ D.T)``; at a large batch (k=10 and k=1000), a small one (16 queries, where
faiss' default skips BLAS) and single queries. Repetitions are interleaved so drift in machine load hits every method
alike; each
method's median QPS is reported. HNSW is timed at several efSearch values against exact search on the same
batches, with recall@10 against the exact top 10, and at the chosen efSearch also one query at a time.

torch and faiss each bring their own OpenMP runtime; interleaved in one process, one's threads spin-wait
while the other works, which on a busy 2-core machine costs either side up to 5x. The script therefore sets
``OMP_WAIT_POLICY=PASSIVE`` (unless already set) before importing them; ``--threads`` sets both pools.

Two data sets: ``uniform`` (random unit vectors, as asked) and ``structured`` (unit vectors near a
32-dimensional subspace, like real embeddings' low intrinsic dimension). Uniform vectors in high dimension
are the worst case for any graph index: the true 10 nearest neighbours are barely closer than the rest.
Prints one JSON line (ratios at the top) and saves ``benchmarks/results/search_speed.json``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch and faiss start their OpenMP runtimes

import faiss
import numpy as np
import torch

from benchmarks._common import save_result
from llara_cli.encode.embedding_store import EmbeddingMeta, save_embeddings
from llara_cli.index.faiss_index import (
    DEFAULT_EF_CONSTRUCTION,
    DEFAULT_HNSW_M,
    DenseIndex,
    build_index,
    load_index,
)
from llara_cli.search.faiss_search import configure_flat_search, search_index

RESULT_NAME = "search_speed"
FAISS_DEFAULT_BLAS_THRESHOLD = faiss.cvar.distance_compute_blas_threshold  # read before llara changes it
DEFAULT_N_DOCS = 100_000
DEFAULT_N_QUERIES = 1_000
DEFAULT_DIM = 576  # SmolLM2-135M hidden size
DEFAULT_REPEATS = 3
DEFAULT_BATCH = 1000
SMALL_BATCH = 16  # few enough queries for faiss' default per-pair (non-BLAS) path at dim 576
SINGLE_QUERY_COUNT = 64  # queries timed one at a time (slow for exact search: a subset is enough)
RECALL_AT = 10
RUN_DEPTH = 1000  # hits per query in a run written by `llara search`
EF_SEARCH_VALUES = (16, 32, 64, 128, 256, 512)
TARGET_RECALL = 0.98
STRUCTURED_INTRINSIC_DIM = 32
STRUCTURED_NOISE = 0.1  # isotropic noise relative to the subspace signal, per coordinate
SEED = 0


def uniform_unit_vectors(rng: np.random.Generator, count: int, dim: int) -> np.ndarray:
    vectors = rng.standard_normal((count, dim), dtype=np.float32)  # (count, dim)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def structured_unit_vectors(rng: np.random.Generator, basis: np.ndarray, count: int) -> np.ndarray:
    """Unit vectors close to the subspace spanned by ``basis`` (intrinsic_dim, dim)."""
    intrinsic_dim, dim = basis.shape
    latent = rng.standard_normal((count, intrinsic_dim), dtype=np.float32)  # (count, intrinsic_dim)
    vectors = latent @ basis + STRUCTURED_NOISE * rng.standard_normal((count, dim), dtype=np.float32)  # (count, dim)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def batched(search: Callable[[np.ndarray], object], queries: np.ndarray, batch_size: int) -> Callable[[], None]:
    def run() -> None:
        for start in range(0, len(queries), batch_size):
            search(queries[start:start + batch_size])
    return run


def timed_qps(run: Callable[[], object], n_queries: int) -> float:
    started = time.perf_counter()
    run()
    return n_queries / (time.perf_counter() - started)


def interleaved_median_qps(methods: dict[str, Callable[[], None]], n_queries: int, repeats: int) -> dict[str, float]:
    """Run every method once per repetition, in turn; the median QPS per method over repetitions."""
    for run in methods.values():  # warm-up: page in the vectors, start thread pools
        run()
    samples: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeats):
        for name, run in methods.items():
            samples[name].append(timed_qps(run, n_queries))
    return {name: round(statistics.median(values), 1) for name, values in samples.items()}


def exact_search_speeds(
    flat: DenseIndex, documents: np.ndarray, queries: np.ndarray, k: int, batch_size: int, repeats: int
) -> dict[str, float]:
    """QPS of faiss (configured), faiss (default threshold) and torch matmul + topk on the same batches."""
    document_tensor = torch.from_numpy(documents)  # (n_docs, dim)

    def faiss_configured(batch: np.ndarray) -> object:
        configure_flat_search(flat.dim)
        return flat.faiss_index.search(batch, k)

    def faiss_default(batch: np.ndarray) -> object:
        faiss.cvar.distance_compute_blas_threshold = FAISS_DEFAULT_BLAS_THRESHOLD
        return flat.faiss_index.search(batch, k)

    def torch_topk(batch: np.ndarray) -> object:
        with torch.inference_mode():
            return torch.topk(torch.from_numpy(batch) @ document_tensor.T, k, dim=1)  # (batch, k)

    speeds = interleaved_median_qps(
        {
            "faiss_flat": batched(faiss_configured, queries, batch_size),
            "faiss_flat_default_threshold": batched(faiss_default, queries, batch_size),
            "torch_matmul_topk": batched(torch_topk, queries, batch_size),
        },
        len(queries), repeats,
    )
    configure_flat_search(flat.dim)
    speeds["flat_vs_torch"] = round(speeds["faiss_flat"] / speeds["torch_matmul_topk"], 2)
    speeds["flat_vs_default_threshold"] = round(speeds["faiss_flat"] / speeds["faiss_flat_default_threshold"], 2)
    return speeds


def recall_at(found: np.ndarray, truth: np.ndarray, depth: int) -> float:
    hits = sum(len(set(row_found[:depth]) & set(row_truth[:depth])) for row_found, row_truth in zip(found, truth))
    return hits / (len(truth) * depth)


def hnsw_vs_flat_speeds(
    flat: DenseIndex, hnsw: DenseIndex, ef_search: int, queries: np.ndarray, batch_size: int, repeats: int
) -> dict[str, float]:
    params = faiss.SearchParametersHNSW(efSearch=ef_search)
    configure_flat_search(flat.dim)
    return interleaved_median_qps(
        {
            "hnsw": batched(lambda batch: hnsw.faiss_index.search(batch, RECALL_AT, params=params), queries, batch_size),
            "flat": batched(lambda batch: flat.faiss_index.search(batch, RECALL_AT), queries, batch_size),
        },
        len(queries), repeats,
    )


def hnsw_curve(flat: DenseIndex, hnsw: DenseIndex, queries: np.ndarray, batch_size: int, repeats: int) -> list[dict]:
    """QPS and recall@10 of HNSW at each efSearch, timed side by side with exact search."""
    configure_flat_search(flat.dim)
    _, truth = flat.faiss_index.search(queries, RECALL_AT)  # (n_queries, 10) exact neighbours
    points = []
    for ef_search in EF_SEARCH_VALUES:
        params = faiss.SearchParametersHNSW(efSearch=ef_search)
        _, found = hnsw.faiss_index.search(queries, RECALL_AT, params=params)  # (n_queries, 10)
        speeds = hnsw_vs_flat_speeds(flat, hnsw, ef_search, queries, batch_size, repeats)
        point = {
            "ef_search": ef_search,
            "hnsw_qps": speeds["hnsw"],
            "flat_qps": speeds["flat"],
            "hnsw_vs_flat_qps": round(speeds["hnsw"] / speeds["flat"], 2),
            "recall_at_10": round(recall_at(found, truth, RECALL_AT), 4),
        }
        print(point, file=sys.stderr, flush=True)
        points.append(point)
    return points


def summarise_hnsw(points: list[dict]) -> dict:
    """The cheapest efSearch reaching the target recall, or the most accurate one if none does."""
    reaching = [point for point in points if point["recall_at_10"] >= TARGET_RECALL]
    chosen = reaching[0] if reaching else max(points, key=lambda point: point["recall_at_10"])
    return {
        "hnsw_vs_flat_qps": chosen["hnsw_vs_flat_qps"],
        "hnsw_recall_at_10": chosen["recall_at_10"],
        "hnsw_ef_search": chosen["ef_search"],
        "hnsw_reaches_target_recall": bool(reaching),
    }


def build_indexes(scratch_dir: Path, documents: np.ndarray,
                  args: argparse.Namespace) -> tuple[DenseIndex, DenseIndex, float]:
    """Save the documents as an embedding set, build flat and HNSW indexes; returns both and the HNSW build time."""
    doc_ids = [f"d{row}" for row in range(len(documents))]
    meta = EmbeddingMeta(
        model="random", prompt_family="none", pooling="none", side="passage", dim=documents.shape[1],
        max_length=0, normalize=True, count=len(documents), source_sha256="none",
    )
    save_embeddings(scratch_dir / "embeddings", doc_ids, documents, meta)
    build_index([scratch_dir / "embeddings"], scratch_dir / "flat", "flat")
    started = time.perf_counter()
    build_index(
        [scratch_dir / "embeddings"], scratch_dir / "hnsw", "hnsw",
        hnsw_m=args.hnsw_m, ef_construction=args.ef_construction,
    )
    build_s = time.perf_counter() - started
    return load_index(scratch_dir / "flat"), load_index(scratch_dir / "hnsw"), build_s


def run_data_set(name: str, documents: np.ndarray, queries: np.ndarray, args: argparse.Namespace, exact: bool) -> dict:
    print(f"{name}: building indexes", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix=f"llara-search-speed-{name}-") as scratch:
        flat, hnsw, hnsw_build_s = build_indexes(Path(scratch), documents, args)
        result: dict = {"hnsw_build_s": round(hnsw_build_s, 1)}
        if exact:
            cases = {
                f"batch{args.batch_size}_k{RECALL_AT}": (args.batch_size, RECALL_AT, queries),
                f"batch{args.batch_size}_k{RUN_DEPTH}": (args.batch_size, RUN_DEPTH, queries),
                f"batch{SMALL_BATCH}_k{RECALL_AT}": (SMALL_BATCH, RECALL_AT, queries),
                f"batch1_k{RECALL_AT}": (1, RECALL_AT, queries[:SINGLE_QUERY_COUNT]),
            }
            result["exact"] = {}
            for label, (batch_size, k, case_queries) in cases.items():
                result["exact"][label] = exact_search_speeds(flat, documents, case_queries, k, batch_size, args.repeats)
                print(label, result["exact"][label], file=sys.stderr, flush=True)
            query_ids = [f"q{row}" for row in range(len(queries))]
            result["search_index_qps_k1000"] = round(timed_qps(
                lambda: search_index(flat, queries, query_ids, k=RUN_DEPTH, batch_size=args.batch_size), len(queries)
            ), 1)
        result["hnsw_points"] = hnsw_curve(flat, hnsw, queries, args.batch_size, args.repeats)
        result.update(summarise_hnsw(result["hnsw_points"]))
        single = hnsw_vs_flat_speeds(flat, hnsw, result["hnsw_ef_search"], queries[:SINGLE_QUERY_COUNT], 1, args.repeats)
        result["hnsw_vs_flat_qps_single_query"] = round(single["hnsw"] / single["flat"], 2)
        result["single_query_qps"] = single
        print("single query", single, file=sys.stderr, flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-docs", type=int, default=DEFAULT_N_DOCS)
    parser.add_argument("--n-queries", type=int, default=DEFAULT_N_QUERIES)
    parser.add_argument("--dim", type=int, default=DEFAULT_DIM)
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, help="queries per search call")
    parser.add_argument("--hnsw-m", type=int, default=DEFAULT_HNSW_M)
    parser.add_argument("--ef-construction", type=int, default=DEFAULT_EF_CONSTRUCTION)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for both faiss and torch")
    args = parser.parse_args()
    faiss.omp_set_num_threads(args.threads)
    torch.set_num_threads(args.threads)

    rng = np.random.default_rng(SEED)
    uniform = run_data_set(
        "uniform",
        uniform_unit_vectors(rng, args.n_docs, args.dim), uniform_unit_vectors(rng, args.n_queries, args.dim),
        args, exact=True,
    )
    basis = rng.standard_normal((STRUCTURED_INTRINSIC_DIM, args.dim), dtype=np.float32)  # (intrinsic_dim, dim)
    basis /= np.sqrt(STRUCTURED_INTRINSIC_DIM)
    structured = run_data_set(
        "structured",
        structured_unit_vectors(rng, basis, args.n_docs), structured_unit_vectors(rng, basis, args.n_queries),
        args, exact=False,
    )
    save_result(RESULT_NAME, {
        "benchmark": RESULT_NAME,
        "flat_vs_torch": min(case["flat_vs_torch"] for case in uniform["exact"].values()),
        "hnsw_vs_flat_qps": uniform["hnsw_vs_flat_qps"],
        "hnsw_recall_at_10": uniform["hnsw_recall_at_10"],
        "hnsw_ef_search": uniform["hnsw_ef_search"],
        "structured_hnsw_vs_flat_qps": structured["hnsw_vs_flat_qps"],
        "structured_hnsw_recall_at_10": structured["hnsw_recall_at_10"],
        "structured_hnsw_ef_search": structured["hnsw_ef_search"],
        "structured_hnsw_vs_flat_qps_single_query": structured["hnsw_vs_flat_qps_single_query"],
        "n_docs": args.n_docs, "n_queries": args.n_queries, "dim": args.dim, "repeats": args.repeats,
        "batch_size": args.batch_size, "hnsw_m": args.hnsw_m, "ef_construction": args.ef_construction,
        "uniform": uniform,
        "structured": structured,
        "faiss": faiss.__version__,
        "threads": args.threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "load_average": [round(load, 2) for load in os.getloadavg()],
    })


if __name__ == "__main__":
    main()
