"""Embedding collapse vs the adaptation objective (FlagEmbedding issue #538: BoW loss alone, cosines ~ 1).

    python benchmarks/objective_collapse.py                      # defaults: 200 SciFact docs, 60 steps each
    python benchmarks/objective_collapse.py --model /path/to/tiny-model --steps 2 --docs 20 --queries 5  # smoke

``smollm2-135m`` (the embedded model), flagembedding family, adapted for ``--steps`` short steps on the text of
~200 SciFact documents (the judged documents of ``--queries`` test queries plus seeded distractors) with each
objective setting below, through ``run_adaptation`` (``precision="auto"``: bf16 autocast where the CPU has
native bf16, else fp32; the saved run was bf16). Each model then encodes the same documents; reported: the
mean pairwise cosine of the (normalised) passage embeddings -- 1 is total collapse -- and nDCG@10 / R@100 of
the queries over those documents. ``raw`` is the unadapted model.

Writes ``benchmarks/results/objective_collapse.json`` (with the CPU model, torch's CPU capability and the load
average before and after: the machine may be shared) and prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import cpu_kind, save_result
from benchmarks.adapt_effect import load_collection, load_encoder, retrieval_measures

FAMILY = "flagembedding"
COLLECTION = "scifact"
RAW = "raw"
SETTINGS = {  # name -> AdaptConfig objective fields (None: no adaptation)
    RAW: None,
    "paper": {"objective": "paper"},  # BoW only
    "paper+stopwords": {"objective": "paper", "remove_stop_words": True},
    "released": {"objective": "released"},  # AR + BoW/10, stop words removed
    "released-no-ar": {"objective": "released", "lm_loss_weight": 0.0},  # BoW/10, stop words removed
}
QUERY_MAX_LENGTH = 64


def mean_pairwise_cosine(embeddings: np.ndarray) -> dict:
    """Mean and spread of the off-diagonal cosines of ``(n, dim)`` embeddings (normalised here)."""
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    cosines = unit @ unit.T  # (n, n)
    off_diagonal = cosines[~np.eye(len(unit), dtype=bool)]
    return {"mean_pairwise_cosine": round(float(off_diagonal.mean()), 4),
            "std_pairwise_cosine": round(float(off_diagonal.std()), 4),
            "min_pairwise_cosine": round(float(off_diagonal.min()), 4)}


def retrieval_quality(encoder, collection: dict, passages: np.ndarray, query_max_length: int, batch_size: int) -> dict:
    query_embeddings = encoder.encode_queries([query.text for query in collection["queries"]], batch_size=batch_size,
                                              max_length=query_max_length)  # (n_queries, dim)
    return retrieval_measures(query_embeddings, passages, collection)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated names of SETTINGS")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--docs", type=int, default=200)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--encode-batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--name", default="objective_collapse", help="result file benchmarks/results/<name>.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    from transformers.utils import logging as hf_logging

    from llara_cli.training import AdaptConfig, run_adaptation

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    args = parse_args(argv)
    load_before = os.getloadavg()
    started = time.perf_counter()
    collection = load_collection(COLLECTION, args.docs, args.queries, args.seed)
    collection["qrels"] = [qrel for qrel in collection["qrels"]
                           if qrel.doc_id in {document.doc_id for document in collection["documents"]}]
    work_dir = Path(tempfile.mkdtemp(prefix="llara-collapse-"))
    training_text = work_dir / "train.txt"
    training_text.write_text("".join(" ".join(document.text.split()) + "\n" for document in collection["documents"]),
                             encoding="utf-8")
    results: dict = {}
    try:
        for name in [name for name in args.settings.split(",") if name]:
            overrides = SETTINGS[name]
            model, training = args.model, None
            if overrides is not None:
                model = str(work_dir / "adapted")
                records: list[dict] = []
                train_started = time.perf_counter()
                run_adaptation(AdaptConfig(
                    corpus=training_text, out_dir=Path(model), model=args.model, data_format="text",
                    prompt_family=FAMILY, max_length=args.max_length, max_steps=args.steps,
                    batch_size=args.batch_size, learning_rate=args.lr, precision="auto", seed=args.seed,
                    save_steps=max(args.steps, 1), overwrite=True, **overrides,
                ), on_log=records.append)
                steps = [record for record in records if record.get("event") == "step"]
                window = max(1, min(10, len(steps) // 4))
                training = {"seconds": round(time.perf_counter() - train_started, 1)}
                for key in ("loss", "ebae_loss", "ebar_loss", "lm_loss"):
                    if key in steps[0]:
                        training[f"{key}_first"] = round(statistics.mean(step[key] for step in steps[:window]), 4)
                        training[f"{key}_last"] = round(statistics.mean(step[key] for step in steps[-window:]), 4)
            encoder = load_encoder(model, FAMILY, args.seed)
            passages = encoder.encode_passages([document.text for document in collection["documents"]],
                                               batch_size=args.encode_batch_size, max_length=args.max_length)
            results[name] = {"settings": overrides, "training": training, **mean_pairwise_cosine(passages),
                             **retrieval_quality(encoder, collection, passages, QUERY_MAX_LENGTH,
                                                 args.encode_batch_size)}
            del encoder
            shutil.rmtree(work_dir / "adapted", ignore_errors=True)
            print(f"{name}: {json.dumps(results[name])}", flush=True)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    print_table(results)
    payload = {
        "benchmark": "objective_collapse", "model": args.model, "family": FAMILY, "collection": COLLECTION,
        "documents": len(collection["documents"]), "queries": len(collection["queries"]),
        "settings": vars(args), "results": results, "total_seconds": round(time.perf_counter() - started, 1),
        "cpu": cpu_kind(), "load_average_before": [round(value, 2) for value in load_before],
        "load_average_after": [round(value, 2) for value in os.getloadavg()],
    }
    save_result(args.name, payload)
    return payload


def print_table(results: dict) -> None:
    print(f"{'objective':16} {'mean cos':>9} {'nDCG@10':>8} {'R@100':>7}")
    for name, row in results.items():
        print(f"{name:16} {row['mean_pairwise_cosine']:9.4f} {row['nDCG@10']:8.4f} {row['R@100']:7.4f}")


if __name__ == "__main__":
    main()
