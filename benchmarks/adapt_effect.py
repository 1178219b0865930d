"""Does LLaRA adaptation help zero-shot retrieval? Raw vs adapted ``smollm2-135m``, both prompt families.

    python benchmarks/adapt_effect.py                       # defaults: ~30 min on 2 free CPU cores
    python benchmarks/adapt_effect.py --steps 40 --max-docs 500 --families paper     # a quick look
    python benchmarks/adapt_effect.py --model /path/to/tiny-model --steps 2 --max-docs 50   # smoke test

1. Unlabeled text: the corpus text (title + body; never queries or qrels) of SciFact, CACM and Cranfield from
   ``../shared/data``, documents shuffled together into one plain-text file (one document a line).
2. For each prompt family: ``run_adaptation`` (joint EBAE + EBAR pass, bf16 autocast where native, AdamW,
   linear schedule).
3. Zero-shot evaluation of the raw model and of the adapted one, same family: passages and judged test queries
   encoded with ``LlaraEncoder`` (the best dtype), brute-force inner-product search, nDCG@10 and R@100 with ir_measures.
   On 2 CPU cores the full corpora are too slow to encode four times, so by default each corpus is cut to every
   document judged for the evaluated queries plus seeded random distractors up to ``--max-docs`` (the same
   subset for every model): absolute numbers are therefore higher than full-corpus ones; the raw-vs-adapted
   comparison is what this measures. ``--max-docs 0`` uses the full corpora.
4. The joint vs two-pass step time (forward + backward on the same training batch, interleaved repetitions).

Writes ``benchmarks/results/adapt_effect.json`` and prints a table.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import SHARED_DATA, best_dtype, save_result, seeded_encoder
from llara_cli.data.corpus import read_corpus, read_queries
from llara_cli.data.qrels import read_qrels
from llara_cli.data.records import Document

COLLECTIONS = ("scifact", "cacm", "cranfield")
FAMILIES = ("paper", "flagembedding")
MEASURES = ("nDCG@10", "R@100")
TOP_K = 100


# --------------------------------------------------------------------------------------------------- data


def write_training_text(collections: dict[str, list[Document]], path: Path, seed: int) -> int:
    """All corpus texts, shuffled together, one document a line (line breaks inside a text become spaces)."""
    texts = [" ".join(document.text.split()) for documents in collections.values() for document in documents]
    texts = [text for text in texts if text]
    random.Random(seed).shuffle(texts)
    path.write_text("".join(text + "\n" for text in texts), encoding="utf-8")
    return len(texts)


def evaluation_subset(documents: list[Document], judged: set[str], max_docs: int, seed: int) -> list[Document]:
    """Every judged document plus seeded random others up to ``max_docs`` (all documents when 0), corpus order."""
    if max_docs <= 0 or len(documents) <= max_docs:
        return documents
    others = [document.doc_id for document in documents if document.doc_id not in judged]
    keep = set(judged) | set(random.Random(seed).sample(others, max(0, min(len(others), max_docs - len(judged)))))
    return [document for document in documents if document.doc_id in keep]


def load_collection(name: str, max_docs: int, max_queries: int, seed: int) -> dict:
    root = SHARED_DATA / name
    qrels = read_qrels(root, "test")
    judged_queries = sorted({qrel.query_id for qrel in qrels})
    if max_queries and len(judged_queries) > max_queries:
        judged_queries = sorted(random.Random(seed).sample(judged_queries, max_queries))
    wanted = set(judged_queries)
    qrels = [qrel for qrel in qrels if qrel.query_id in wanted]
    queries = [query for query in read_queries(root) if query.query_id in wanted]
    corpus = read_corpus(root)
    documents = evaluation_subset(corpus, {qrel.doc_id for qrel in qrels}, max_docs, seed)
    return {"corpus": corpus, "documents": documents, "queries": queries, "qrels": qrels}


# --------------------------------------------------------------------------------------------------- evaluation


def search(query_embeddings: np.ndarray, passage_embeddings: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-k: ``(indices, scores)``, each ``(n_queries, k)``, best first."""
    scores = query_embeddings @ passage_embeddings.T  # (n_queries, n_passages)
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # (n_queries, k), unordered
    top_scores = np.take_along_axis(scores, top, axis=1)
    order = np.argsort(-top_scores, axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1), np.take_along_axis(top_scores, order, axis=1)


def evaluate(encoder, collection: dict, passage_max_length: int, query_max_length: int, batch_size: int) -> dict:
    documents, queries = collection["documents"], collection["queries"]
    started = time.perf_counter()
    passages = encoder.encode_passages([document.text for document in documents], batch_size=batch_size,
                                       max_length=passage_max_length)  # (n_docs, dim)
    query_embeddings = encoder.encode_queries([query.text for query in queries], batch_size=batch_size,
                                              max_length=query_max_length)  # (n_queries, dim)
    result = retrieval_measures(query_embeddings, passages, collection)
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def retrieval_measures(query_embeddings: np.ndarray, passages: np.ndarray, collection: dict) -> dict:
    """``MEASURES`` of the exact top-``TOP_K`` search of the collection's queries over its documents."""
    import ir_measures

    documents, queries = collection["documents"], collection["queries"]
    indices, scores = search(query_embeddings, passages, TOP_K)
    run = [ir_measures.ScoredDoc(query.query_id, documents[index].doc_id, float(score))
           for query, row, row_scores in zip(queries, indices, scores) for index, score in zip(row, row_scores)]
    qrels = [ir_measures.Qrel(qrel.query_id, qrel.doc_id, qrel.relevance) for qrel in collection["qrels"]]
    values = ir_measures.calc_aggregate([ir_measures.parse_measure(name) for name in MEASURES], qrels, run)
    return {name: round(float(values[ir_measures.parse_measure(name)]), 4) for name in MEASURES}


def load_encoder(model: str, family: str, seed: int):
    return seeded_encoder(model, best_dtype(), prompt_family=family, seed=seed)


# --------------------------------------------------------------------------------------------------- step time


def step_time_ratio(model: str, family: str, training_text: Path, batch_size: int, max_length: int,
                    repetitions: int, seed: int) -> dict:
    """Seconds of forward + backward for the same batch, joint vs two passes (interleaved, medians)."""
    from llara_cli.core.batching import AdaptationCollator
    from llara_cli.model.config import FAMILY_BOW_LOGITS
    from llara_cli.model.llara_model import LlaraModel
    from llara_cli.training.adaptation_dataset import AdaptationDataset
    from llara_cli.training.adaptation_objective import LlaraAdaptationModel

    torch.manual_seed(seed)
    loaded = LlaraModel.load(model, prompt_family=family)
    causal_lm, tokenizer, config, prompt_format = loaded.causal_lm, loaded.tokenizer, loaded.config, loaded.prompt_format
    wrapper = LlaraAdaptationModel(causal_lm.train(), prompt_format, bow_logits=FAMILY_BOW_LOGITS[config.prompt_family],
                                   excluded_target_ids=tokenizer.all_special_ids)
    budget = prompt_format.text_budget(max_length, joint=True)
    dataset = AdaptationDataset(training_text, tokenizer, span_tokens=budget, seed=seed, shuffle_buffer=1000)
    iterator = iter(dataset)
    examples = [next(iterator) for _ in range(batch_size)]
    batches = {joint: AdaptationCollator(prompt_format, tokenizer.pad_token_id, max_length, joint=joint)(examples)
               for joint in (True, False)}
    times: dict[bool, list[float]] = defaultdict(list)
    for repetition in range(repetitions + 1):  # the first round warms up
        for joint in (True, False):
            started = time.perf_counter()
            wrapper.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=best_dtype() == "bf16"):
                loss = wrapper(**batches[joint])["loss"]
            loss.backward()
            if repetition:
                times[joint].append(time.perf_counter() - started)
    joint_s, two_pass_s = statistics.median(times[True]), statistics.median(times[False])
    return {"family": family, "batch_size": batch_size, "max_length": max_length, "repetitions": repetitions,
            "joint_step_s": round(joint_s, 3), "two_pass_step_s": round(two_pass_s, 3),
            "two_pass_over_joint": round(two_pass_s / joint_s, 3)}


# --------------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--collections", default=",".join(COLLECTIONS))
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--train-max-length", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--max-docs", type=int, default=400, help="documents per evaluated corpus (0: all)")
    parser.add_argument("--max-queries", type=int, default=100, help="judged test queries per collection (0: all)")
    parser.add_argument("--passage-max-length", type=int, default=128)
    parser.add_argument("--query-max-length", type=int, default=64)
    parser.add_argument("--encode-batch-size", type=int, default=32)
    parser.add_argument("--step-repetitions", type=int, default=3)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--work-dir", type=Path, default=None, help="default: a temporary directory, removed")
    parser.add_argument("--name", default="adapt_effect", help="result file benchmarks/results/<name>.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    from transformers.utils import logging as hf_logging

    from llara_cli.training import AdaptConfig, run_adaptation

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    args = parse_args(argv)
    families = [name for name in args.families.split(",") if name]
    names = [name for name in args.collections.split(",") if name]
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="llara-adapt-effect-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        collections = {name: load_collection(name, args.max_docs, args.max_queries, args.seed) for name in names}
        training_text = work_dir / "train.txt"
        n_training_docs = write_training_text({name: c["corpus"] for name, c in collections.items()}, training_text,
                                              args.seed)
        print(f"training text: {n_training_docs} documents; evaluation: " + ", ".join(
            f"{name} {len(c['documents'])} docs / {len(c['queries'])} queries" for name, c in collections.items()),
            flush=True)

        step_time = step_time_ratio(args.model, families[0], training_text, args.batch_size, args.train_max_length,
                                    args.step_repetitions, args.seed)
        print(f"step time: {json.dumps(step_time)}", flush=True)

        results: dict = {}
        training: dict = {}
        for family in families:
            raw = load_encoder(args.model, family, args.seed)
            results[family] = {name: {"raw": evaluate(raw, c, args.passage_max_length, args.query_max_length,
                                                      args.encode_batch_size)} for name, c in collections.items()}
            del raw
            print(f"{family} raw: {json.dumps(results[family])}", flush=True)

            out_dir = work_dir / f"adapted-{family}"
            records: list[dict] = []
            train_started = time.perf_counter()
            run_adaptation(AdaptConfig(
                corpus=training_text, out_dir=out_dir, model=args.model, data_format="text", prompt_family=family,
                max_length=args.train_max_length, max_steps=args.steps, batch_size=args.batch_size,
                learning_rate=args.lr, precision="auto", seed=args.seed, save_steps=max(args.steps, 1),
                objective="paper",  # what the saved results ran at (llara adapt's default until 2026-12-03)
                logging_steps=1, overwrite=True,
            ), on_log=records.append)
            losses = [record["loss"] for record in records if record.get("event") == "step"]
            window = max(1, min(10, len(losses) // 4))
            training[family] = {
                "steps": args.steps, "seconds": round(time.perf_counter() - train_started, 1),
                "loss_first": round(statistics.mean(losses[:window]), 4),
                "loss_last": round(statistics.mean(losses[-window:]), 4),
            }
            print(f"{family} training: {json.dumps(training[family])}", flush=True)

            adapted = load_encoder(str(out_dir), family, args.seed)
            for name, c in collections.items():
                results[family][name]["adapted"] = evaluate(adapted, c, args.passage_max_length,
                                                            args.query_max_length, args.encode_batch_size)
            del adapted
            print(f"{family} adapted: {json.dumps(results[family])}", flush=True)
    finally:
        if args.work_dir is None:
            shutil.rmtree(work_dir, ignore_errors=True)

    print_table(results)
    payload = {
        "benchmark": "adapt_effect", "model": args.model,
        "settings": {key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()},
        "evaluation_docs": {name: len(c["documents"]) for name, c in collections.items()},
        "evaluation_queries": {name: len(c["queries"]) for name, c in collections.items()},
        "training_documents": n_training_docs,
        "results": results, "training": training, "step_time": step_time,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    save_result(args.name, payload)
    return payload


def print_table(results: dict) -> None:
    print(f"\n{'family':<14}{'collection':<11}" + "".join(f"{f'{m} raw':>14}{f'{m} adapted':>17}" for m in MEASURES))
    for family, per_collection in results.items():
        for name, row in per_collection.items():
            cells = "".join(f"{row['raw'][m]:>14.4f}{row.get('adapted', {}).get(m, float('nan')):>17.4f}"
                            for m in MEASURES)
            print(f"{family:<14}{name:<11}{cells}")


if __name__ == "__main__":
    main()
