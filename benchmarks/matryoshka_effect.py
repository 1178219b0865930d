"""Does training for prefixes pay? smollm2-135m finetuned with and without ``--mrl-dims`` (same seed), every prefix.

    nice -n 10 python benchmarks/matryoshka_effect.py          # 60 LoRA steps each, a pooled SciFact subset
    python benchmarks/matryoshka_effect.py --quick             # 4 steps, 10 queries: a smoke run

Both models start from the raw embedded model (flagembedding prompt family) and are finetuned with the same seed,
data (SciFact train, BM25 hard negatives) and schedule; one with the Matryoshka loss over ``--mrl-dims`` (the full
576 first). Each is evaluated on a pooled SciFact sub-collection (``--eval-queries`` test queries, their judged
passages and the BM25 top ``--pool-depth`` of each, as ``finetune_effect.py`` pools) at the full dim and at each
prefix (cut and L2-normalised again, as ``llara encode --dim`` stores it), exact search and the prefix's binary
index + rescoring. Saved to ``benchmarks/results/matryoshka_effect.json`` with the machine kind.
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
from benchmarks.finetune_effect import bm25_run  # noqa: E402

MODEL = "smollm2-135m"
FAMILY = "flagembedding"
SEED = 1
MRL_DIMS = (288, 144, 64)
DEPTH, SKIP, NUM_NEGATIVES = 50, 3, 8  # hard negatives: BM25 ranks 4..50


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


def finetune(work: Path, name: str, steps: int, mrl_dims: tuple[int, ...] | None, args) -> tuple[Path, dict]:
    from llara_cli.data.corpus import queries_for_search
    from llara_cli.data.finetune import MiningSettings, collection_files, mine_training_data
    from llara_cli.training.finetune import FinetuneConfig, run_finetuning

    source = SHARED_DATA / "scifact"
    out = work / "models" / name
    if not out.is_dir():
        queries = queries_for_search(source, "train")
        run_path = work / "runs" / "scifact-train-bm25.trec"
        bm25_run(source, queries, run_path, DEPTH)
        data = mine_training_data(collection_files(source, split="train"), run_path,
                                  MiningSettings(skip=SKIP, depth=DEPTH, num_negatives=NUM_NEGATIVES, seed=SEED))
        started = time.perf_counter()
        run_finetuning(FinetuneConfig(
            out_dir=out, train=source, negatives_from=run_path, model=MODEL, prompt_family=FAMILY,
            skip=SKIP, depth=DEPTH, num_negatives=NUM_NEGATIVES, query_max_length=32,
            passage_max_length=args.passage_max_length, group_size=args.group_size, batch_size=args.batch_size,
            max_steps=steps, save_steps=max(25, steps), seed=SEED, merge=True, mrl_dims=mrl_dims,
        ), data=data)
        print(f"finetuned {name} in {time.perf_counter() - started:.0f} s", flush=True)
    records = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    losses = [record["loss"] for record in records if record.get("event") == "step" and "loss" in record]
    return out, {"steps": steps, "first_loss": losses[0] if losses else None,
                 "last_loss": losses[-1] if losses else None}


def evaluate_model(model: Path, collection: Path, dims: list[int], passage_max_length: int) -> dict:
    from llara_cli.data.corpus import read_corpus, read_queries
    from llara_cli.data.qrels import read_qrels
    from llara_cli.encode.embedding_store import EmbeddingMeta, save_embeddings
    from llara_cli.encode.encoder import LlaraEncoder
    from llara_cli.encode.truncation import truncate_vectors
    from llara_cli.evaluation.measures import aggregate, calc_per_query, parse_measures, qrels_to_dict
    from llara_cli.index.faiss_index import build_index, load_index
    from llara_cli.search.faiss_search import search_index

    documents, queries = read_corpus(collection), read_queries(collection)
    encoder = LlaraEncoder.load(str(model), dtype="bf16")
    started = time.perf_counter()
    passages = encoder.encode_passages([document.text for document in documents], batch_size=16,
                                       max_length=passage_max_length)  # (n_docs, 576)
    query_vectors = encoder.encode_queries([query.text for query in queries], batch_size=32)  # (n_queries, 576)
    encode_s = time.perf_counter() - started
    qrels = qrels_to_dict(read_qrels(collection, "test"))
    measures = parse_measures(["nDCG@10", "R@100"])
    doc_ids, query_ids = [document.doc_id for document in documents], [query.query_id for query in queries]
    results: dict[str, dict] = {"encode_s": round(encode_s, 1)}
    work = Path(tempfile.mkdtemp(prefix="llara-mrl-"))
    try:
        for dim in [passages.shape[1], *dims]:
            doc_prefix = truncate_vectors(passages, dim, True)  # (n_docs, dim)
            query_prefix = truncate_vectors(query_vectors, dim, True)  # (n_queries, dim)
            emb = work / f"emb-{dim}"
            save_embeddings(emb, doc_ids, doc_prefix, EmbeddingMeta(
                model=str(model), prompt_family=FAMILY, pooling="marker_mean", side="passage", dim=dim,
                max_length=passage_max_length, normalize=True, count=len(doc_ids), source_sha256="pooled"))
            for kind in ("flat", "binary"):
                build_index([emb], work / f"{kind}-{dim}", kind, overwrite=True)
                hits = search_index(load_index(work / f"{kind}-{dim}"), query_prefix, query_ids, k=100)
                run = {query_id: dict(query_hits) for query_id, query_hits in hits.items()}
                values = aggregate(measures, calc_per_query(measures, qrels, run))
                results[f"{kind}@{dim}"] = {"ndcg@10": round(values["nDCG@10"], 4),
                                            "recall@100": round(values["R@100"], 4)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--group-size", type=int, default=2)
    parser.add_argument("--passage-max-length", type=int, default=128)
    parser.add_argument("--eval-queries", type=int, default=100)
    parser.add_argument("--pool-depth", type=int, default=10)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "llara-matryoshka-effect")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.eval_queries, args.pool_depth, args.batch_size = 4, 10, 3, 4
        args.work = args.work.with_name(args.work.name + "-quick")
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    collection = pooled_collection(args.work, args.eval_queries, args.pool_depth)
    arms = {}
    for name, dims in (("no-mrl", None), ("mrl", MRL_DIMS)):
        model, training = finetune(args.work, name, args.steps, dims, args)
        arms[name] = {"mrl_dims": list(dims) if dims else None, "training": training,
                      **evaluate_model(model, collection, list(MRL_DIMS), args.passage_max_length)}
        print(json.dumps({name: arms[name]}), flush=True)
    n_docs = sum(1 for _ in (collection / "corpus.jsonl").open())
    result = {"benchmark": "matryoshka_effect", "model": MODEL, "prompt_family": FAMILY, "seed": SEED,
              "mrl_dims": [576, *MRL_DIMS], "steps": args.steps, "batch_size": args.batch_size,
              "group_size": args.group_size, "passage_max_length": args.passage_max_length,
              "eval_queries": args.eval_queries, "pool_depth": args.pool_depth, "eval_passages": n_docs,
              "quick": args.quick, "arms": arms, "total_s": round(time.perf_counter() - started, 1)}
    table = markdown_table(result)
    if args.quick:
        print(json.dumps(result))
    else:
        save_result("matryoshka_effect", result)
        (RESULTS_DIR / "matryoshka_effect.md").write_text(table)
    print(table)
    return 0


def markdown_table(result: dict) -> str:
    dims = result["mrl_dims"]
    lines = [f"{result['model']} finetuned {result['steps']} LoRA steps (seed {result['seed']}) with / without "
             f"--mrl-dims {','.join(map(str, dims[1:]))}; SciFact pooled: {result['eval_queries']} test queries, "
             f"{result['eval_passages']} passages. nDCG@10 (exact / binary + rescore)", "",
             "| model | " + " | ".join(f"dim {dim}" for dim in dims) + " |", "|---|" + "---:|" * len(dims)]
    for name, arm in result["arms"].items():
        full = arm[f"flat@{dims[0]}"]["ndcg@10"]
        cells = [f"{arm[f'flat@{dim}']['ndcg@10']:.4f} ({arm[f'flat@{dim}']['ndcg@10'] / full:.1%}) / "
                 f"{arm[f'binary@{dim}']['ndcg@10']:.4f}" if full else "-" for dim in dims]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
