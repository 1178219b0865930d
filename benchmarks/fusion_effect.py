"""Does fusion hurt? BM25, a dense run, RRF (k 60), the robust default and a tuned weighted fusion.

    python benchmarks/fusion_effect.py --work /tmp/i17-cache                 # MiniLM and a noise run
    python benchmarks/fusion_effect.py --dense minilm --work /tmp/i17-cache  # one dense system only

Per dense system and collection: BM25 (Anserini), the dense run, RRF(BM25, dense) with k = 60, the robust
default of ``llara search --fuse`` (no labels) and, on SciFact, the fusion whose dense weight was tuned on the
SciFact *train* queries and qrels (disjoint from the test queries) by nDCG@10. CACM and Cranfield have no
train split: there only the label-free default applies. nDCG@10, R@100 and MRR@10 on the test qrels with
paired t-tests against BM25.

Dense systems: ``minilm`` (all-MiniLM-L6-v2, a dense run roughly as good as BM25), ``noise`` (random unit
vectors: a dense run at chance, the case a label-free fusion must survive; the raw embedded model is close to
it, SciFact nDCG@10 0.06) and, on request, ``raw`` (smollm2-135m before adaptation, about an hour of encoding
on 2 loaded cores; ``--dtype auto``, the default, picks bf16 only where the CPU has native bf16). Embeddings
are cached in ``--work`` (an interrupted run continues). Results: ``benchmarks/results/fusion_effect.{json,md}``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import RESULTS_DIR, SHARED_DATA, cpu_kind, save_result, seeded_encoder
from benchmarks.finetune_effect import MODEL, EmbeddingCache, MiniLM, bm25_run, dense_search, stage

COLLECTIONS = ("scifact", "cacm", "cranfield")
TUNING_COLLECTION = "scifact"
TUNING_SPLIT = "train"
EVALUATION_SPLIT = "test"
DENSE_SYSTEMS = ("minilm", "noise", "raw")
DEFAULT_DENSE_SYSTEMS = ("minilm", "noise")
NOISE_DIM = 64
NOISE_SEED = 17
MEASURES = ("nDCG@10", "R@100", "MRR@10")
SEARCH_DEPTH = 100
RAW_PASSAGE_MAX_LENGTH = 128
MAX_NOISE_LOSS = 0.001  # nDCG@10 the robust weight may lose to BM25 alone when the dense run is noise
RAW_SEED = 13  # the raw flagembedding model draws its new marker embeddings


class Noise:
    """Random unit vectors: a dense run at chance, the worst case a label-free fusion must survive."""

    def __init__(self) -> None:
        import numpy as np

        self.rng = np.random.default_rng(NOISE_SEED)

    def encode(self, texts: list[str]):
        vectors = self.rng.standard_normal((len(texts), NOISE_DIM)).astype("float32")  # (n, dim)
        return vectors / (vectors ** 2).sum(axis=1, keepdims=True) ** 0.5

    encode_passages = encode_queries = encode


class RawLlara:
    """The embedded model before adaptation, flagembedding prompts, encoded in ``dtype``."""

    def __init__(self, dtype: str) -> None:
        self.encoder = seeded_encoder(MODEL, dtype, prompt_family="flagembedding", seed=RAW_SEED)

    def encode_passages(self, texts: list[str]):
        return self.encoder.encode_passages(texts, max_length=RAW_PASSAGE_MAX_LENGTH)

    def encode_queries(self, texts: list[str]):
        return self.encoder.encode_queries(texts)


def splits_of(name: str) -> tuple[str, ...]:
    return (TUNING_SPLIT, EVALUATION_SPLIT) if name == TUNING_COLLECTION else (EVALUATION_SPLIT,)


def system_runs(system: str, dtype: str, work: Path) -> dict:
    """``{collection: {split: (bm25 results, dense results)}}`` for one dense system (cached embeddings)."""
    from llara_cli.data.corpus import queries_for_search, read_corpus

    cache = EmbeddingCache(work)
    encoders: list = []

    def encoder():
        if not encoders:
            encoders.append({"minilm": MiniLM, "noise": Noise}.get(system, lambda: RawLlara(dtype))())
        return encoders[0]

    runs: dict = {}
    for name in COLLECTIONS:
        directory = SHARED_DATA / name
        documents = read_corpus(directory)
        doc_ids = [document.doc_id for document in documents]
        stage(f"{system}: {name} passages ({len(documents)})")
        doc_vectors = cache.get(system, f"{name}-passages", doc_ids, [d.text for d in documents],
                                lambda texts: encoder().encode_passages(texts))
        runs[name] = {}
        for split in splits_of(name):
            queries = queries_for_search(directory, split)
            query_ids = [query.query_id for query in queries]
            query_vectors = cache.get(system, f"{name}-{split}-queries", query_ids, [q.text for q in queries],
                                      lambda texts: encoder().encode_queries(texts))
            bm25 = bm25_run(directory, queries, work / "runs" / f"{name}-{split}-bm25.trec", k=SEARCH_DEPTH)
            runs[name][split] = (bm25, dense_search(query_vectors, doc_vectors, query_ids, doc_ids, k=SEARCH_DEPTH))
    return runs


def to_scored_docs(results: dict) -> list:
    from llara_cli.data.runs import ScoredDoc

    return [ScoredDoc(query_id, doc_id, score) for query_id, scored in results.items() for doc_id, score in scored]


def weight_curve(bm25: dict, dense: dict, qrels: list) -> dict[str, float]:
    """nDCG@10 of the anchored fusion at every grid weight (a diagnostic: nothing is chosen from a test curve)."""
    from llara_cli.search.anchored_fusion import tune_dense_weight

    scores = tune_dense_weight([bm25, dense], qrels).scores
    return {f"{weight:.2f}": round(score, 4) for weight, score in scores.items()}


def evaluate_system(system: str, runs: dict) -> dict:
    """Every fusion of one dense system with BM25 on every collection's test split, against BM25."""
    from llara_cli.data.qrels import read_qrels
    from llara_cli.evaluation import evaluate_runs
    from llara_cli.search.anchored_fusion import ROBUST_DENSE_WEIGHT, anchored_fusion, check_disjoint, tune_dense_weight
    from llara_cli.search.fusion import reciprocal_rank_fusion

    train_bm25, train_dense = runs[TUNING_COLLECTION][TUNING_SPLIT]
    test_bm25 = runs[TUNING_COLLECTION][EVALUATION_SPLIT][0]
    train_qrels = read_qrels(SHARED_DATA / TUNING_COLLECTION, TUNING_SPLIT)
    check_disjoint({qrel.query_id for qrel in train_qrels} & set(train_bm25), test_bm25)
    tuned = tune_dense_weight([train_bm25, train_dense], train_qrels)
    stage(f"{system}: dense weight tuned on {tuned.tuning_queries} {TUNING_COLLECTION} {TUNING_SPLIT} queries: "
          f"{tuned.dense_weight}")
    collections = {}
    for name in COLLECTIONS:
        bm25, dense = runs[name][EVALUATION_SPLIT]
        fused = {"bm25": bm25, system: dense, "rrf": reciprocal_rank_fusion([bm25, dense], depth=SEARCH_DEPTH),
                 "robust": anchored_fusion([bm25, dense], ROBUST_DENSE_WEIGHT, depth=SEARCH_DEPTH)}
        tuned_name = "tuned" if name == TUNING_COLLECTION else f"tuned on {TUNING_COLLECTION}"
        fused[tuned_name] = anchored_fusion([bm25, dense], tuned.dense_weight, depth=SEARCH_DEPTH)
        qrels = read_qrels(SHARED_DATA / name, EVALUATION_SPLIT)
        report = evaluate_runs(qrels, {run: to_scored_docs(results) for run, results in fused.items()},
                               measures=list(MEASURES), baseline="bm25").to_dict(per_query=False)
        collections[name] = {
            "queries": len(bm25),
            "runs": {run: {"aggregates": payload["aggregates"],
                           "vs_bm25": {measure: {"delta": comparison["delta"], "p_value": comparison["p_value"]}
                                       for measure, comparison in payload["comparisons"].items()}}
                     for run, payload in report["runs"].items()},
            "test_weight_curve": weight_curve(bm25, dense, qrels),
        }
    return {"tuned": tuned.to_dict(), "robust_dense_weight": ROBUST_DENSE_WEIGHT, "collections": collections}


def robust_check(systems: dict) -> dict | None:
    """How ``ROBUST_DENSE_WEIGHT`` is checked, on the labelled tuning split only (no test split is looked at).

    The largest grid weight whose loss against BM25 alone, when the dense run is pure noise, stays within
    ``MAX_NOISE_LOSS``: bounded damage from a useless dense run, and as much of a useful one's gain as that
    bound allows (a good dense run's gain grows with the weight up to far beyond it).
    """
    if "noise" not in systems:
        return None
    curve = {point["dense_weight"]: point["nDCG@10"] for point in systems["noise"]["tuned"]["grid"]}
    weights = sorted(curve)
    allowed = [weight for weight in weights if curve[weights[0]] - curve[weight] <= MAX_NOISE_LOSS]
    chosen = max(weight for weight in allowed if all(w in allowed for w in weights if w <= weight))
    return {"max_noise_loss": MAX_NOISE_LOSS, "chosen_weight": chosen,
            "noise_loss_by_weight": {f"{weight:.2f}": round(curve[weights[0]] - curve[weight], 4) for weight in weights}}


def markdown(result: dict) -> str:
    lines = []
    for system, evaluated in result["systems"].items():
        lines += [f"### dense = {system} (weight tuned on {TUNING_COLLECTION} {TUNING_SPLIT}: "
                  f"{evaluated['tuned']['dense_weight']}; robust default {evaluated['robust_dense_weight']})", "",
                  "| run | " + " | ".join(f"{name} nDCG@10" for name in COLLECTIONS) + " |",
                  "|---|" + "---:|" * len(COLLECTIONS)]
        names = list(evaluated["collections"][COLLECTIONS[0]]["runs"])
        for index, run in enumerate(names):
            cells = []
            for name in COLLECTIONS:
                runs = evaluated["collections"][name]["runs"]
                payload = runs[list(runs)[index]]
                value = payload["aggregates"]["nDCG@10"]
                p_value = payload["vs_bm25"].get("nDCG@10", {}).get("p_value")
                marker = ("▲" if value > runs["bm25"]["aggregates"]["nDCG@10"] else "▼") \
                    if p_value is not None and p_value < 0.05 else ""
                cells.append(f"{value:.4f}{marker}")
            label = "tuned (SciFact) / SciFact's weight elsewhere" if run == "tuned" else run
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    robust = result["robust_check"]
    if robust is not None:
        lines += [f"Largest weight losing at most {robust['max_noise_loss']} nDCG@10 to BM25 with a noise dense run on "
                  f"{TUNING_COLLECTION} {TUNING_SPLIT}: {robust['chosen_weight']} (loss by weight: "
                  f"{robust['noise_loss_by_weight']}).", ""]
    lines.append("▲/▼: significantly better/worse than BM25 (paired t-test, p < 0.05).")
    return "\n".join(lines) + "\n"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="cache directory for embeddings and runs")
    parser.add_argument("--dense", choices=DENSE_SYSTEMS, action="append",
                        help=f"dense system(s) (default: {', '.join(DEFAULT_DENSE_SYSTEMS)})")
    parser.add_argument("--dtype", default="auto", help="inference dtype of smollm2-135m (auto: bf16 where the "
                        "CPU has native bf16, fp32 otherwise; on AVX2-only CPUs bf16 is ~50x slower than fp32)")
    parser.add_argument("--encode-only", action="store_true", help="fill the embedding cache and stop")
    return parser.parse_args()


def main() -> None:
    from llara_cli.runtime.precision import resolve_dtype

    args = parse_args()
    systems = args.dense or list(DEFAULT_DENSE_SYSTEMS)
    load_before = os.getloadavg()
    started = time.perf_counter()
    all_runs = {system: system_runs(system, args.dtype, args.work) for system in systems}
    if args.encode_only:
        return
    result = {
        "benchmark": "fusion_effect",
        "dense_dtype": resolve_dtype(args.dtype),  # what the raw model ran in (MiniLM and noise: fp32)
        "systems": {system: evaluate_system(system, runs) for system, runs in all_runs.items()},
        "robust_check": None,
        "load_average_before": [round(value, 2) for value in load_before],
        "load_average_after": [round(value, 2) for value in os.getloadavg()],
        "cpu": cpu_kind(),
        "wall_s_this_invocation": round(time.perf_counter() - started, 1),  # cached embeddings cost nothing
    }
    result["robust_check"] = robust_check(result["systems"])
    save_result("fusion_effect", result)
    table = markdown(result)
    (RESULTS_DIR / "fusion_effect.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
