"""The Matryoshka loss at small cost: a linear head on frozen all-MiniLM-L6-v2 vectors, trained with and without it.

    nice -n 10 python benchmarks/matryoshka_head.py        # needs compact_vectors.py's cached SciFact vectors

``benchmarks/matryoshka_effect.py`` finetunes the embedded LLM with and without ``--mrl-dims``; on a shared
2-core machine that takes hours. This benchmark isolates the loss itself: a 384 x 384 linear map (initialised
to the identity, so "untrained" is MiniLM itself) is trained on SciFact's train queries and their positive
passages (in-batch negatives) with ``contrastive_loss_from_embeddings`` (full dim only) or
``matryoshka_contrastive_loss`` over 384/192/96/48 -- the functions ``llara finetune`` calls -- with the same
seed, data order and steps. Each head is evaluated on SciFact's test queries (all 5,183 passages) at every
prefix, cut and L2-normalised again as ``llara encode --dim`` does.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402

from benchmarks._common import RESULTS_DIR, SHARED_DATA, save_result  # noqa: E402
from benchmarks.compact_vectors import DEFAULT_CACHE  # noqa: E402

DIMS = (384, 192, 96, 48)
SEED = 0
TEMPERATURE = 0.05


def train_query_vectors(cache: Path) -> tuple[list[str], np.ndarray]:
    from llara_cli.data.corpus import queries_for_search

    path = cache / "train_queries.npz"
    if path.is_file():
        saved = np.load(path, allow_pickle=False)
        return saved["query_ids"].tolist(), saved["queries"]
    from benchmarks.finetune_effect import MiniLM

    queries = queries_for_search(SHARED_DATA / "scifact", "train")
    vectors = MiniLM().encode_queries([query.text for query in queries])
    np.savez(path, query_ids=np.asarray([query.query_id for query in queries]), queries=vectors)
    return [query.query_id for query in queries], vectors


def train_head(pairs: tuple[np.ndarray, np.ndarray], dims: tuple[int, ...] | None, steps: int, batch: int):
    import torch

    from llara_cli.core.contrastive import contrastive_loss_from_embeddings, matryoshka_contrastive_loss

    torch.manual_seed(SEED)
    queries, positives = (torch.from_numpy(array) for array in pairs)  # (n_pairs, 384) each
    head = torch.nn.Linear(queries.shape[1], queries.shape[1], bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.eye(queries.shape[1]))
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=0.0)
    order = np.random.default_rng(SEED)
    losses = []
    for _step in range(steps):
        rows = torch.from_numpy(order.choice(len(queries), size=batch, replace=False))
        query_embeddings = torch.nn.functional.normalize(head(queries[rows]), dim=-1)  # (batch, 384)
        passage_embeddings = torch.nn.functional.normalize(head(positives[rows]), dim=-1)  # (batch, 384)
        if dims is None:
            loss = contrastive_loss_from_embeddings(query_embeddings, passage_embeddings, TEMPERATURE, group_size=1)
        else:
            loss = matryoshka_contrastive_loss(query_embeddings, passage_embeddings, TEMPERATURE, dims, group_size=1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    return head.weight.detach().numpy().T.copy(), losses  # (384, 384): x @ weight


def evaluate(passages: np.ndarray, queries: np.ndarray, doc_ids: list[str], query_ids: list[str],
             qrels: dict) -> dict:
    from llara_cli.encode.truncation import truncate_vectors
    from llara_cli.evaluation.measures import aggregate, calc_per_query, parse_measures

    measures = parse_measures(["nDCG@10"])
    result = {}
    for dim in DIMS:
        scores = truncate_vectors(queries, dim, True) @ truncate_vectors(passages, dim, True).T  # (n_q, n_docs)
        top = np.argsort(-scores, axis=1)[:, :100]
        run = {query_id: {doc_ids[index]: float(scores[row, index]) for index in top[row]}
               for row, query_id in enumerate(query_ids)}
        result[dim] = round(aggregate(measures, calc_per_query(measures, qrels, run))["nDCG@10"], 4)
    return result


def main(argv: list[str] | None = None) -> int:
    from llara_cli.data.qrels import read_qrels
    from llara_cli.evaluation.measures import qrels_to_dict

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE / "compact_vectors")
    args = parser.parse_args(argv)
    data = np.load(args.cache_dir / "vectors.npz", allow_pickle=False)
    doc_ids, passages = data["doc_ids"].tolist(), data["passages"].astype(np.float32)
    test_ids, test_queries = data["query_ids"].tolist(), data["queries"].astype(np.float32)
    train_ids, train_queries = train_query_vectors(args.cache_dir)
    row_of_doc = {doc_id: row for row, doc_id in enumerate(doc_ids)}
    row_of_query = {query_id: row for row, query_id in enumerate(train_ids)}
    pairs = [(row_of_query[qrel.query_id], row_of_doc[qrel.doc_id])
             for qrel in read_qrels(SHARED_DATA / "scifact", "train")
             if qrel.relevance > 0 and qrel.query_id in row_of_query and qrel.doc_id in row_of_doc]
    query_rows, doc_rows = (np.asarray(column) for column in zip(*pairs))
    train_pairs = (train_queries[query_rows].astype(np.float32), passages[doc_rows])
    qrels = qrels_to_dict(read_qrels(SHARED_DATA / "scifact", "test"))
    arms = {"minilm (no head)": {"ndcg@10": evaluate(passages, test_queries, doc_ids, test_ids, qrels)}}
    for name, dims in (("head, full-dim loss", None), ("head, matryoshka loss", DIMS)):
        started = time.perf_counter()
        weight, losses = train_head(train_pairs, dims, args.steps, args.batch_size)
        arms[name] = {"ndcg@10": evaluate(passages @ weight, test_queries @ weight, doc_ids, test_ids, qrels),
                      "first_loss": round(losses[0], 4), "last_loss": round(losses[-1], 4),
                      "train_s": round(time.perf_counter() - started, 1)}
        print(json.dumps({name: arms[name]}), flush=True)
    result = {"benchmark": "matryoshka_head", "base": "all-MiniLM-L6-v2 (frozen)", "dims": list(DIMS),
              "steps": args.steps, "batch_size": args.batch_size, "temperature": TEMPERATURE, "seed": SEED,
              "train_pairs": len(pairs), "test_queries": len(test_ids), "passages": len(doc_ids), "arms": arms}
    save_result("matryoshka_head", result)
    table = markdown_table(result)
    (RESULTS_DIR / "matryoshka_head.md").write_text(table)
    print(table)
    return 0


def markdown_table(result: dict) -> str:
    dims = result["dims"]
    lines = ["| SciFact nDCG@10 | " + " | ".join(f"dim {dim}" for dim in dims) + " |", "|---|" + "---:|" * len(dims)]
    for name, arm in result["arms"].items():
        full = arm["ndcg@10"][str(dims[0])] if str(dims[0]) in arm["ndcg@10"] else arm["ndcg@10"][dims[0]]
        cells = []
        for dim in dims:
            value = arm["ndcg@10"].get(str(dim), arm["ndcg@10"].get(dim))
            cells.append(f"{value:.4f} ({value / full:.1%})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
