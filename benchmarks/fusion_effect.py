"""Does fusion hurt? BM25, a dense run, RRF (k 60), the robust default and a tuned weighted fusion.

    python benchmarks/fusion_effect.py --work /tmp/i17-cache                 # MiniLM + raw smollm2-135m
    python benchmarks/fusion_effect.py --dense minilm --work /tmp/i17-cache  # one dense system only

Per dense system and collection: BM25 (Anserini), the dense run, RRF(BM25, dense) with k = 60, the robust
default of ``llara search --fuse`` (no labels) and, on SciFact, the fusion whose dense weight was tuned on the
SciFact *train* queries and qrels (disjoint from the test queries) by nDCG@10. CACM and Cranfield have no
train split: there only the label-free default applies. nDCG@10, R@100 and MRR@10 on the test qrels with
paired t-tests against BM25.

Dense systems: ``minilm`` (all-MiniLM-L6-v2, a dense run roughly as good as BM25) and ``raw`` (the embedded
smollm2-135m before adaptation: a dense run near chance, the case a robust fusion must survive). Embeddings
are cached in ``--work`` (an interrupted run continues). Results: ``benchmarks/results/fusion_effect.{json,md}``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import RESULTS_DIR, SHARED_DATA, save_result  # noqa: E402
from benchmarks.finetune_effect import MODEL, EmbeddingCache, MiniLM, bm25_run, dense_search, stage  # noqa: E402

COLLECTIONS = ("scifact", "cacm", "cranfield")
TUNING_COLLECTION = "scifact"
TUNING_SPLIT = "train"
EVALUATION_SPLIT = "test"
DENSE_SYSTEMS = ("minilm", "raw")
MEASURES = ("nDCG@10", "R@100", "MRR@10")
SEARCH_DEPTH = 100
RAW_PASSAGE_MAX_LENGTH = 128
RAW_SEED = 13  # the raw flagembedding model draws its new marker embeddings


class RawLlara:
    """The embedded model before adaptation, flagembedding prompts, encoded in ``dtype``."""

    def __init__(self, dtype: str) -> None:
        import torch

        from llara_cli.core.modeling import LlaraEncoder

        torch.manual_seed(RAW_SEED)
        self.encoder = LlaraEncoder.load(MODEL, dtype=dtype, prompt_family="flagembedding")

    def encode_passages(self, texts: list[str]):  # noqa: ANN201
        return self.encoder.encode_passages(texts, max_length=RAW_PASSAGE_MAX_LENGTH)

    def encode_queries(self, texts: list[str]):  # noqa: ANN201
        return self.encoder.encode_queries(texts)


def splits_of(name: str) -> tuple[str, ...]:
    return (TUNING_SPLIT, EVALUATION_SPLIT) if name == TUNING_COLLECTION else (EVALUATION_SPLIT,)


def system_runs(system: str, dtype: str, work: Path) -> dict:
    """``{collection: {split: (bm25 results, dense results)}}`` for one dense system (cached embeddings)."""
    from llara_cli.data.corpus import queries_for_search, read_corpus

    cache = EmbeddingCache(work)
    encoders: list = []

    def encoder():  # noqa: ANN202 - loaded only when something must be encoded
        if not encoders:
            encoders.append(MiniLM() if system == "minilm" else RawLlara(dtype))
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


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="cache directory for embeddings and runs")
    parser.add_argument("--dense", choices=DENSE_SYSTEMS, action="append", help="dense system(s) (default: all)")
    parser.add_argument("--dtype", default="fp32", help="inference dtype of smollm2-135m (bf16 where the CPU "
                        "has AVX-512-BF16; on AVX2-only CPUs bf16 is ~50x slower than fp32)")
    parser.add_argument("--encode-only", action="store_true", help="fill the embedding cache and stop")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    systems = args.dense or list(DENSE_SYSTEMS)
    load_before = os.getloadavg()
    started = time.perf_counter()
    all_runs = {system: system_runs(system, args.dtype, args.work) for system in systems}
    if args.encode_only:
        return
    raise SystemExit("evaluation: not written yet")


if __name__ == "__main__":
    main()
