"""Compact vectors on real embeddings: int8, binary, rescoring and Matryoshka prefixes on SciFact.

    nice -n 10 python benchmarks/compact_vectors.py                       # all-MiniLM-L6-v2 (384-d)
    nice -n 10 python benchmarks/compact_vectors.py --model out/mrl --name compact_vectors_mrl --dims 576,288,144,64
    python benchmarks/compact_vectors.py --quick                          # 300 passages, 30 queries: seconds

The corpus and the judged test queries are encoded once (cached in ``--cache-dir``), written as llara embedding
sets, and every arm is built with the library's own ``build_index`` and searched with ``search_index``:
``flat`` (fp32, exact: the reference), ``int8``, ``binary``, ``binary-hnsw``, ``ivfpq``, each alone and
rescored (``+rescore``, the kind's default factor), and for each prefix dim in ``--dims`` the prefix
flat and the prefix binary + rescore (``llara encode --dim``: prefix, L2-normalised again), then the same two
on the corpus's principal directions instead of the prefix (``llara index --pca DIM``).

Per arm: nDCG@10 and recall@100 (k = 100), recall@10 against the flat run's top 10 (k = 10, the search the
goals are stated for), the bytes of the in-memory index per vector (the ``index`` file faiss loads: search
RAM; the float store beside it is read by memory map, its bytes are reported apart), QPS with all test queries
in one batch and one query at a time. Saved to ``benchmarks/results/<name>.json`` with the machine kind.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402

from benchmarks._common import RESULTS_DIR, SHARED_DATA, save_result  # noqa: E402

KINDS = ("flat", "int8", "binary", "binary-hnsw", "ivfpq")
RESCORED = ("int8", "binary", "binary-hnsw", "ivfpq")
K_EVAL = 100
K_OVERLAP = 10
SINGLE_QUERIES = 100  # queries searched one at a time for batch-1 QPS
HNSW_M = 32
SWEEP = {"int8": (2,), "binary": (10, 20, 30, 50)}  # explicit rescore factors measured besides the defaults
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "llara-compact-cache"


def encode_collection(system: str, model: str | None, collection: Path, quick: bool, cache: Path) -> dict:
    """``{"doc_ids", "passages", "query_ids", "queries"}`` from the cache, or encoded now and cached."""
    from llara_cli.data.corpus import queries_for_search, read_corpus

    cache.mkdir(parents=True, exist_ok=True)
    arrays = cache / "vectors.npz"
    if arrays.is_file():
        saved = np.load(arrays, allow_pickle=False)
        return {key: saved[key] for key in saved.files}
    documents = read_corpus(collection)
    queries = queries_for_search(collection, "test")
    if quick:
        documents, queries = documents[:300], queries[:30]
    started = time.perf_counter()
    if system == "minilm":
        from benchmarks.finetune_effect import MiniLM

        encoder = MiniLM()
        passages = encoder.encode_passages([document.text for document in documents])
        query_vectors = encoder.encode_queries([query.text for query in queries])
    else:
        from llara_cli.encode.encoder import LlaraEncoder

        encoder = LlaraEncoder.load(model, dtype="bf16")
        passages = encoder.encode_passages([document.text for document in documents], batch_size=16,
                                           max_length=196)
        query_vectors = encoder.encode_queries([query.text for query in queries], batch_size=32, max_length=32)
    print(f"encoded {len(documents)} passages and {len(queries)} queries in {time.perf_counter() - started:.0f} s",
          flush=True)
    result = {"doc_ids": np.asarray([document.doc_id for document in documents]), "passages": passages,
              "query_ids": np.asarray([query.query_id for query in queries]), "queries": query_vectors}
    np.savez(arrays, **result)
    return result


def write_embeddings(directory: Path, doc_ids: list[str], passages: np.ndarray, name: str) -> Path:
    from llara_cli.encode.embedding_store import EmbeddingMeta, save_embeddings

    meta = EmbeddingMeta(model=name, prompt_family="paper", pooling="mean", side="passage", dim=passages.shape[1],
                         max_length=0, normalize=True, count=len(doc_ids), source_sha256="scifact")
    save_embeddings(directory, doc_ids, passages, meta, overwrite=True)
    return directory


def evaluate(results: dict, qrels: dict) -> dict:
    from llara_cli.evaluation.measures import aggregate, calc_per_query, parse_measures

    measures = parse_measures(["nDCG@10", "R@100"])
    run = {query_id: {doc_id: score for doc_id, score in hits} for query_id, hits in results.items()}
    values = aggregate(measures, calc_per_query(measures, qrels, run))
    return {"ndcg@10": round(values["nDCG@10"], 4), "recall@100": round(values["R@100"], 4)}


def overlap_at_10(results: dict, exact: dict) -> float:
    hits = [len({doc for doc, _ in results[query][:K_OVERLAP]} & {doc for doc, _ in exact[query][:K_OVERLAP]})
            for query in exact]
    return round(float(np.mean(hits)) / K_OVERLAP, 4)


def run_arm(name: str, kind: str, rescore: bool, emb_dir: Path, work: Path, queries: np.ndarray,
            query_ids: list[str], qrels: dict, exact: dict | None, factor: int | None = None,
            pca: int | None = None) -> tuple[dict, dict]:
    from llara_cli.index.faiss_index import INDEX_FILE, build_index, load_index
    from llara_cli.index.rescore_store import RESCORE_FILE
    from llara_cli.search.faiss_search import search_index

    out = work / name.replace("+", "_")
    started = time.perf_counter()
    meta = build_index([emb_dir], out, kind, hnsw_m=HNSW_M, rescore_store="auto" if rescore else "none",
                       overwrite=True, pca=pca)
    build_s = time.perf_counter() - started
    index = load_index(out)
    factor = factor if rescore else 1  # None: the kind's default (and the default candidate floor)
    search_index(index, queries[:1], query_ids[:1], k=K_OVERLAP, rescore_factor=factor)  # warm-up
    run_eval = search_index(index, queries, query_ids, k=K_EVAL, rescore_factor=factor)
    started = time.perf_counter()
    run_top10 = search_index(index, queries, query_ids, k=K_OVERLAP, rescore_factor=factor)
    batch_s = time.perf_counter() - started
    single = min(SINGLE_QUERIES, len(query_ids))
    started = time.perf_counter()
    for row in range(single):
        search_index(index, queries[row:row + 1], query_ids[row:row + 1], k=K_OVERLAP, rescore_factor=factor)
    single_s = time.perf_counter() - started
    count = meta.embedding.count
    from llara_cli.search.rescoring import candidate_count, resolve_rescore_factor

    resolved = resolve_rescore_factor(index, factor)
    measured = {
        "kind": kind, "dim": pca or meta.embedding.dim, "rescore_factor": resolved,
        "candidates_at_k10": candidate_count(K_OVERLAP, resolved, factor is not None, count),
        **evaluate(run_eval, qrels),
        "recall@10_vs_flat": overlap_at_10(run_top10, exact) if exact is not None else 1.0,
        "index_bytes_per_vector": round((out / INDEX_FILE).stat().st_size / count, 1),
        "store_bytes_per_vector": round((out / RESCORE_FILE).stat().st_size / count, 1)
        if (out / RESCORE_FILE).is_file() else 0,
        "qps_batch": round(len(query_ids) / batch_s, 1), "qps_single": round(single / single_s, 1),
        "build_s": round(build_s, 2),
    }
    shutil.rmtree(out, ignore_errors=True)
    return measured, run_top10


def main(argv: list[str] | None = None) -> int:
    from llara_cli.data.qrels import read_qrels
    from llara_cli.encode.truncation import truncate_vectors
    from llara_cli.evaluation.measures import qrels_to_dict

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a llara model to encode with (default: all-MiniLM-L6-v2)")
    parser.add_argument("--name", default="compact_vectors", help="result name under benchmarks/results/")
    parser.add_argument("--dims", default="96", help="prefix dims to measure (comma-separated)")
    parser.add_argument("--collection", type=Path, default=SHARED_DATA / "scifact")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    system = "minilm" if args.model is None else "llara"
    cache = args.cache_dir / (f"{args.name}{'-quick' if args.quick else ''}")
    data = encode_collection(system, args.model, args.collection, args.quick, cache)
    doc_ids, query_ids = data["doc_ids"].tolist(), data["query_ids"].tolist()
    passages, queries = data["passages"].astype(np.float32), data["queries"].astype(np.float32)
    qrels = qrels_to_dict(read_qrels(args.collection, "test"))
    model_name = args.model or "all-MiniLM-L6-v2"
    work = Path(tempfile.mkdtemp(prefix="llara-compact-"))
    arms: dict[str, dict] = {}
    try:
        full_dir = write_embeddings(work / "emb-full", doc_ids, passages, model_name)
        arms["flat"], exact = run_arm("flat", "flat", False, full_dir, work, queries, query_ids, qrels, None)
        print(json.dumps({"flat": arms["flat"]}), flush=True)
        for kind in KINDS[1:]:
            for rescore in (False, True):
                name = kind + ("+rescore" if rescore else "")
                arms[name], _ = run_arm(name, kind, rescore, full_dir, work, queries, query_ids, qrels, exact)
                print(json.dumps({name: arms[name]}), flush=True)
        for kind, factors in SWEEP.items():  # explicit factors: exactly k x factor candidates
            for factor in factors:
                name = f"{kind}+rescore x{factor}"
                arms[name], _ = run_arm(name, kind, True, full_dir, work, queries, query_ids, qrels, exact, factor)
                print(json.dumps({name: arms[name]}), flush=True)
        for dim in [int(dim) for dim in args.dims.split(",") if dim.strip()]:
            if dim >= passages.shape[1]:
                continue
            prefix_dir = write_embeddings(work / f"emb-{dim}", doc_ids, truncate_vectors(passages, dim, True),
                                          model_name)
            prefix_queries = truncate_vectors(queries, dim, True)
            for name, kind, rescore in ((f"dim{dim}-flat", "flat", False),
                                        (f"dim{dim}-binary+rescore", "binary", True)):
                arms[name], _ = run_arm(name, kind, rescore, prefix_dir, work, prefix_queries, query_ids, qrels,
                                        exact)
                print(json.dumps({name: arms[name]}), flush=True)
            for name, kind, rescore in ((f"pca{dim}-flat", "flat", False),  # llara index --pca: the principal
                                        (f"pca{dim}-binary+rescore", "binary", True)):  # directions, not the prefix
                arms[name], _ = run_arm(name, kind, rescore, full_dir, work, queries, query_ids, qrels, exact,
                                        pca=dim)
                print(json.dumps({name: arms[name]}), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    flat = arms["flat"]
    for measured in arms.values():
        measured["ndcg@10_vs_flat"] = round(measured["ndcg@10"] / flat["ndcg@10"], 4) if flat["ndcg@10"] else None
        measured["ram_reduction_vs_flat"] = round(flat["index_bytes_per_vector"] / measured["index_bytes_per_vector"], 1)
    result = {"benchmark": "compact_vectors", "model": model_name, "collection": str(args.collection.name),
              "passages": len(doc_ids), "queries": len(query_ids), "dim": int(passages.shape[1]),
              "k_eval": K_EVAL, "k_overlap": K_OVERLAP, "hnsw_m": HNSW_M, "quick": args.quick, "arms": arms}
    if args.quick:
        print(json.dumps(result))
    else:
        save_result(args.name, result)
        (RESULTS_DIR / f"{args.name}.md").write_text(markdown_table(result))
    print(markdown_table(result))
    return 0


def markdown_table(result: dict) -> str:
    lines = [f"{result['model']} on {result['collection']} ({result['passages']} passages, {result['queries']} "
             f"test queries, dim {result['dim']})", "",
             "| arm | dim | candidates at k=10 | nDCG@10 | vs flat | R@100 | recall@10 vs flat | index B/vector | "
             "RAM ÷ | store B/vector | QPS batch | QPS 1 |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, arm in result["arms"].items():
        lines.append(f"| {name} | {arm['dim']} | {arm['candidates_at_k10']} | {arm['ndcg@10']:.4f} "
                     f"| {arm['ndcg@10_vs_flat']:.3f} | {arm['recall@100']:.4f} | {arm['recall@10_vs_flat']:.3f} "
                     f"| {arm['index_bytes_per_vector']:.0f} | {arm['ram_reduction_vs_flat']}x "
                     f"| {arm['store_bytes_per_vector']:.0f} | {arm['qps_batch']} | {arm['qps_single']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
