"""Does training for prefixes pay? smollm2-135m finetuned with and without ``--mrl-dims`` (same seed), every prefix.

    nice -n 10 python benchmarks/matryoshka_effect.py          # 60 LoRA steps each, all of SciFact
    nice -n 10 python benchmarks/matryoshka_effect.py --mrl-weights 1,1,3,2   # + a weighted Matryoshka arm
    python benchmarks/matryoshka_effect.py --quick             # 4 steps, 10 queries: a smoke run

Both models start from the raw embedded model (flagembedding prompt family) and are finetuned with the same seed,
data (SciFact train, BM25 hard negatives) and schedule; one with the Matryoshka loss over ``--mrl-dims`` (the full
576 first). Each is evaluated on all of SciFact's test queries and passages (``--collection pooled``: a pooled
sub-collection, ``--eval-queries`` test queries, their judged passages and the BM25 top ``--pool-depth`` of
each, as ``finetune_effect.py`` pools) at the full dim and at each prefix (cut and L2-normalised again, as
``llara encode --dim`` stores it): exact search and the prefix's int8 and binary indexes, alone and rescored;
and at each smaller dim the full vectors projected onto the corpus's principal directions (``llara index
--pca``) instead of cut. ``--mrl-weights`` adds a third arm: the Matryoshka loss with those weights. Saved to
``benchmarks/results/matryoshka_effect.json`` with the machine kind.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


from benchmarks._common import RESULTS_DIR, SHARED_DATA, save_result  # noqa: E402
from benchmarks.finetune_effect import (  # noqa: E402
    TRAIN_NEGATIVE_DEPTH,
    TRAIN_NEGATIVE_SKIP,
    TRAIN_NEGATIVES,
    EmbeddingCache,
    bm25_run,
    bm25_train_negatives,
)

MODEL = "smollm2-135m"
FAMILY = "flagembedding"
SEED = 1
MRL_DIMS = (288, 144, 64)


def pooled_collection(work: Path, n_queries: int, pool_depth: int) -> Path:
    """Test queries sampled with ``SEED``, their judged passages and each one's BM25 top ``pool_depth``."""
    from benchmarks.finetune_effect import write_pooled_collection
    from llara_cli.data.corpus import queries_for_search
    from llara_cli.data.qrels import read_qrels

    source = SHARED_DATA / "scifact"
    target = work / f"scifact-{n_queries}q-pool{pool_depth}"
    if (target / "qrels" / "test.tsv").is_file():
        return target
    queries = random.Random(SEED).sample(queries_for_search(source, "test"), n_queries)
    wanted = {query.query_id for query in queries}
    qrels = [qrel for qrel in read_qrels(source, "test") if qrel.query_id in wanted]
    pooled = bm25_run(source, queries, work / "runs" / f"{target.name}-pool.trec", pool_depth)
    return write_pooled_collection(source, target, queries, qrels, pooled)


def finetune(work: Path, name: str, steps: int, mrl_dims: tuple[int, ...] | None, args,
             mrl_weights: tuple[float, ...] | None = None) -> tuple[Path, dict]:
    from llara_cli.training.finetune import FinetuneConfig, run_finetuning

    source = SHARED_DATA / "scifact"
    out = work / "models" / name
    if not out.is_dir():
        data, run_path = bm25_train_negatives(source, work, SEED)
        started = time.perf_counter()
        run_finetuning(FinetuneConfig(
            out_dir=out, train=source, negatives_from=run_path, model=MODEL, prompt_family=FAMILY,
            skip=TRAIN_NEGATIVE_SKIP, depth=TRAIN_NEGATIVE_DEPTH, num_negatives=TRAIN_NEGATIVES, query_max_length=32,
            passage_max_length=args.passage_max_length, group_size=args.group_size, batch_size=args.batch_size,
            max_steps=steps, save_steps=max(25, steps), seed=SEED, merge=True, mrl_dims=mrl_dims,
            mrl_weights=mrl_weights,
        ), data=data)
        print(f"finetuned {name} in {time.perf_counter() - started:.0f} s", flush=True)
    records = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    losses = [record["loss"] for record in records if record.get("event") == "step" and "loss" in record]
    return out, {"steps": steps, "first_loss": losses[0] if losses else None,
                 "last_loss": losses[-1] if losses else None}


def evaluate_model(model: Path, collection: Path, dims: list[int], passage_max_length: int, cache) -> dict:
    """Every dim of ``model`` on ``collection``'s test queries: exact (flat), int8 and binary codes alone, and
    each rescored with the float store (the default candidates: at least 500), through ``build_index`` /
    ``search_index`` as ``llara index`` / ``llara search`` run them. Per arm: nDCG@10, R@100, the overlap of its
    top 10 with flat's at the same dim, the bytes a search holds per vector (``index`` + ``docid``) and QPS.
    Then, per smaller dim, the index projected onto the corpus's principal directions (``llara index --pca``)
    instead of the prefix, flat and binary + rescore; its overlap is with the full dim's flat top 10."""
    from llara_cli.data.corpus import queries_for_search, read_corpus
    from llara_cli.data.qrels import read_qrels
    from llara_cli.encode.embedding_store import EmbeddingMeta, save_embeddings
    from llara_cli.encode.encoder import LlaraEncoder
    from llara_cli.encode.truncation import truncate_vectors
    from llara_cli.evaluation.measures import aggregate, calc_per_query, parse_measures, qrels_to_dict
    from llara_cli.index.faiss_index import DOCID_FILE, INDEX_FILE, build_index, load_index
    from llara_cli.search.faiss_search import search_index

    documents, queries = read_corpus(collection), queries_for_search(collection, "test")
    encoder = LlaraEncoder.load(str(model), dtype="bf16")
    doc_ids, query_ids = [document.doc_id for document in documents], [query.query_id for query in queries]
    passages = cache.get(model.name, f"{collection.name}-passages", doc_ids, [document.text for document in documents],
                         lambda texts: encoder.encode_passages(texts, batch_size=16,
                                                               max_length=passage_max_length))  # (n_docs, 576)
    query_vectors = cache.get(model.name, f"{collection.name}-queries", query_ids, [query.text for query in queries],
                              lambda texts: encoder.encode_queries(texts, batch_size=32))  # (n_queries, 576)
    encoded = [seconds for key, seconds in cache.encode_seconds.items() if key.startswith(f"{model.name}/")]
    encode_s = round(sum(encoded), 1) if encoded else None  # None: both sides came from the embedding cache
    qrels = qrels_to_dict(read_qrels(collection, "test"))
    measures = parse_measures(["nDCG@10", "R@100"])
    results: dict[str, dict] = {"encode_s": encode_s, "passages": len(doc_ids), "queries": len(query_ids)}
    work = Path(tempfile.mkdtemp(prefix="llara-mrl-"))

    def measure(index, queries, factor, reference_top10) -> tuple[dict, dict]:
        """One index searched with every test query: its row of the table, and its top 10 per query."""
        search_index(index, queries[:1], query_ids[:1], k=100, rescore_factor=factor)  # warm-up
        searched = time.perf_counter()
        hits = search_index(index, queries, query_ids, k=100, rescore_factor=factor)
        qps = len(query_ids) / (time.perf_counter() - searched)
        run = {query_id: dict(query_hits) for query_id, query_hits in hits.items()}
        values = aggregate(measures, calc_per_query(measures, qrels, run))
        top10 = {query_id: {doc for doc, _ in query_hits[:10]} for query_id, query_hits in hits.items()}
        reference_top10 = reference_top10 or top10
        overlap = sum(len(top10[q] & reference_top10[q]) for q in query_ids) / (10 * len(query_ids))
        held = (index.path / INDEX_FILE).stat().st_size + (index.path / DOCID_FILE).stat().st_size
        return {"ndcg@10": round(values["nDCG@10"], 4), "recall@100": round(values["R@100"], 4),
                "recall@10_vs_flat": round(overlap, 4), "bytes_per_vector": round(held / len(doc_ids), 1),
                "qps": round(qps, 1)}, top10

    try:
        full_dim, full_top10 = passages.shape[1], None
        for dim in [full_dim, *dims]:
            doc_prefix = truncate_vectors(passages, dim, True)  # (n_docs, dim)
            query_prefix = truncate_vectors(query_vectors, dim, True)  # (n_queries, dim)
            emb = work / f"emb-{dim}"
            save_embeddings(emb, doc_ids, doc_prefix, EmbeddingMeta(
                model=str(model), prompt_family=FAMILY, pooling="marker_mean", side="passage", dim=dim,
                max_length=passage_max_length, normalize=True, count=len(doc_ids), source_sha256="pooled"))
            flat_top10 = None
            for kind, factors in (("flat", (None,)), ("int8", (1, None)), ("binary", (1, None))):
                out = work / f"{kind}-{dim}"
                build_index([emb], out, kind, overwrite=True)
                index = load_index(out)
                for factor in factors:
                    arm = kind if factor is None and kind == "flat" else f"{kind}{'' if factor == 1 else '+rescore'}"
                    results[f"{arm}@{dim}"], top10 = measure(index, query_prefix, factor, flat_top10)
                    flat_top10 = flat_top10 or top10
                del index
            full_top10 = full_top10 or flat_top10
        for dim in dims:  # the corpus's principal directions instead of the prefix (llara index --pca)
            for kind, arm in (("flat", "pca"), ("binary", "pca+binary+rescore")):
                out = work / f"pca-{kind}-{dim}"
                build_index([work / f"emb-{full_dim}"], out, kind, overwrite=True, pca=dim)
                index = load_index(out)  # takes full-dim queries: it projects them as it projected the passages
                results[f"{arm}@{dim}"], _ = measure(index, truncate_vectors(query_vectors, full_dim, True), None,
                                                     full_top10)
                del index
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--group-size", type=int, default=2)
    parser.add_argument("--passage-max-length", type=int, default=128)
    parser.add_argument("--collection", choices=("full", "pooled"), default="full",
                        help="full: SciFact's 5,183 passages and 300 test queries; pooled: a sampled sub-collection")
    parser.add_argument("--eval-queries", type=int, default=100)
    parser.add_argument("--pool-depth", type=int, default=10)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "llara-matryoshka-effect")
    parser.add_argument("--mrl-weights", type=lambda text: tuple(float(part) for part in text.split(",")),
                        help="a third arm: the Matryoshka loss with these weights, one per trained dim, the full "
                             f"dim first ({len(MRL_DIMS) + 1} numbers, e.g. 1,1,3,2 to favour the small prefixes)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.eval_queries, args.pool_depth, args.batch_size, args.collection = 4, 10, 3, 4, "pooled"
        args.work = args.work.with_name(args.work.name + "-quick")
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    collection = SHARED_DATA / "scifact" if args.collection == "full" else pooled_collection(
        args.work, args.eval_queries, args.pool_depth)
    cache = EmbeddingCache(args.work)  # encoded once per model and collection (a re-run re-evaluates only)
    arms = {}
    plan = [("no-mrl", None, None), ("mrl", MRL_DIMS, None)]
    if args.mrl_weights:
        plan.append((f"mrl-w{'-'.join(f'{weight:g}' for weight in args.mrl_weights)}", MRL_DIMS, args.mrl_weights))
    for name, dims, weights in plan:
        model, training = finetune(args.work, name, args.steps, dims, args, weights)
        arms[name] = {"mrl_dims": list(dims) if dims else None,
                      "mrl_weights": list(weights) if weights else ([1.0] * (len(dims) + 1) if dims else None),
                      "training": training,
                      **evaluate_model(model, collection, list(MRL_DIMS), args.passage_max_length, cache)}
        print(json.dumps({name: arms[name]}), flush=True)
    first = next(iter(arms.values()))
    result = {"benchmark": "matryoshka_effect", "model": MODEL, "prompt_family": FAMILY, "seed": SEED,
              "mrl_dims": [576, *MRL_DIMS], "steps": args.steps, "batch_size": args.batch_size,
              "group_size": args.group_size, "passage_max_length": args.passage_max_length,
              "collection": args.collection, "pool_depth": args.pool_depth if args.collection == "pooled" else None,
              "eval_queries": first["queries"], "eval_passages": first["passages"],
              "quick": args.quick, "arms": arms, "total_s": round(time.perf_counter() - started, 1)}
    table = markdown_table(result)
    if args.quick:
        print(json.dumps(result))
    else:
        name = "matryoshka_effect" if args.collection == "full" else "matryoshka_effect_pooled"
        save_result(name, result)
        (RESULTS_DIR / f"{name}.md").write_text(table)
    print(table)
    return 0


ARMS = ("flat", "int8", "int8+rescore", "binary", "binary+rescore", "pca", "pca+binary+rescore")


def markdown_table(result: dict) -> str:
    dims = result["mrl_dims"]
    where = (f"SciFact ({result['eval_passages']} passages, {result['eval_queries']} test queries)"
             if result["collection"] == "full" else
             f"SciFact pooled ({result['eval_passages']} passages, {result['eval_queries']} test queries)")
    lines = [f"{result['model']} finetuned {result['steps']} LoRA steps (seed {result['seed']}) with / without "
             f"--mrl-dims {','.join(map(str, dims[1:]))}; {where}. nDCG@10 (share of the arm's full dim)", "",
             "| model | " + " | ".join(f"dim {dim}" for dim in dims) + " |", "|---|" + "---:|" * len(dims)]
    for name, arm in result["arms"].items():
        full = arm[f"flat@{dims[0]}"]["ndcg@10"]
        cells = [f"{arm[f'flat@{dim}']['ndcg@10']:.4f} ({arm[f'flat@{dim}']['ndcg@10'] / full:.1%})" if full else "-"
                 for dim in dims]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
        if f"pca@{dims[-1]}" in arm:  # the same model, its corpus's principal directions instead of the prefix
            cells = ["(rotation)"] + [f"{arm[f'pca@{dim}']['ndcg@10']:.4f} ({arm[f'pca@{dim}']['ndcg@10'] / full:.1%})"
                                      if full else "-" for dim in dims[1:]]
            lines.append(f"| {name}, --pca | " + " | ".join(cells) + " |")
    lines += ["", "Each index type, per model and dim: nDCG@10 / R@100 / top-10 overlap with flat at that dim / bytes a "
              "search holds per vector / QPS (all test queries in one call)", "",
              "| model | dim | " + " | ".join(ARMS) + " |", "|---|---:|" + "---|" * len(ARMS)]
    for name, arm in result["arms"].items():
        for dim in dims:
            cells = []
            for kind in ARMS:
                value = arm.get(f"{kind}@{dim}")
                cells.append("-" if value is None else
                             f"{value['ndcg@10']:.4f} / {value['recall@100']:.3f} / "
                             f"{value.get('recall@10_vs_flat', 1.0):.3f} / {value.get('bytes_per_vector', 0):.0f} B / "
                             f"{value.get('qps', 0):.0f}")
            lines.append(f"| {name} | {dim} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
