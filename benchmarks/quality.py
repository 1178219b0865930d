"""Retrieval quality of the embedded model: adaptation alone, adaptation + finetuning and fusion with BM25,
each over several seeds, on full SciFact, CACM and Cranfield, with a learning curve and the levers' ablation.

    python benchmarks/quality.py                          # the headline setting x 3 seeds, curve, ablation
    python benchmarks/quality.py --seeds 1 --ablations none --no-curve   # one pass of the headline setting
    python benchmarks/quality.py --seeds 1 2 3 --finetune-seeds 1   # spread of adaptation, one finetuning
    python benchmarks/quality.py --seeds 2 3 --earlier-seeds OLD.json   # add seeds to an earlier report's
    python benchmarks/quality.py --no-headline --earlier-seeds OLD.json --seeds 1 --ablations full-finetuning
                                                          # one more arm against an earlier report's headline
    python benchmarks/quality.py --quick                  # a plumbing check on a tiny budget (minutes)

What runs (every stage is cached in ``--work``; an interrupted run continues where it stopped):

1. **adapted**: ``llara adapt`` of smollm2-135m on the corpus text of all three collections (one shuffled
   file; never their queries or qrels), one model per seed.
2. **adapted+ft**: ``llara finetune`` (LoRA, InfoNCE, in-batch + hard negatives) of that model on SciFact
   *train*; hard negatives from BM25 or from the adapted model's own dense run (ANCE-style).
3. Every model encodes each full test collection once (cached embeddings); exact dense top 100; nDCG@10 and
   R@100 with ir_measures and paired t-tests against BM25 (Anserini). **tuned** fusion: BM25-anchored, the
   dense weight chosen on SciFact train queries (disjoint from test) and applied to every collection;
   **robust**: the label-free default weight of ``llara search --fuse``. **whitened**: the dense run over a
   whitened index (``llara index --whiten``: fitted on each corpus's passages), its dimension chosen on SciFact
   train queries.
4. The learning curve evaluates the headline adaptation's checkpoints; each ablation arm changes one lever
   of the headline setting and runs at the first seed (``--ablation-seeds N``: the first N).

Results: ``benchmarks/results/quality{,_quick}.{json,md,png}``; the JSON holds per-seed numbers (each with the
date and CPU it was measured on), means and sample standard deviations, stage times and the machine
(``llara env``). ``--earlier-seeds`` joins the seeds of an earlier report of the same headline setting (a
session too short for three seeds measures them in turns); it refuses a report of another setting or one that
holds a seed this run measures. The report written then keeps the earlier report's ablation arms beside this
run's; with ``--no-headline`` only the arms run, at ``--seeds``, against that report's headline seeds.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import random
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import SHARED_DATA, save_report
from benchmarks.finetune_effect import EmbeddingCache, bm25_run, dense_search, stage

MODEL = "smollm2-135m"
COLLECTIONS = ("scifact", "cacm", "cranfield")
TRAIN_COLLECTION = "scifact"
MEASURES = ("nDCG@10", "R@100")
HEADLINE_MEASURE = "nDCG@10"
SEARCH_DEPTH = 100
NEGATIVE_DEPTH = 100  # hard negatives come from ranks skip+1..NEGATIVE_DEPTH of the mining run
NEGATIVE_SKIP = 2
NEGATIVES_PER_QUERY = 15
QUICK_QUERIES = 8  # --quick: judged queries per split in each sampled collection
UNION_CORPUS_SEED = 0  # the document order of the shuffled adaptation corpus (the same for every seed)
TRAIN_PRECISION = "auto"  # bf16 autocast where the CPU has native bf16, else fp32 (core.precision)
GOAL_ADAPTED = 0.5  # issue 17 (a): adaptation alone >= 0.5 x BM25 on every collection
GOAL_FINETUNED = 0.9  # issue 17 (b): adapted + finetuned >= 0.9 x BM25 on SciFact
# `llara finetune`'s LoRA dropout when it became a lever here: reports without the field and cached models
# without it in their name ran at it
LORA_DROPOUT_BEFORE_THE_LEVER = 0.1
# Setting fields added after reports were written, with the value those reports ran at
SETTING_ADDED_FIELDS = {"adapt": {}, "finetune": {"lora_dropout": LORA_DROPOUT_BEFORE_THE_LEVER, "lora": True}}
# `llara index --whiten DIM` candidates: the one best on SciFact *train* nDCG@10 is applied to every collection
WHITENING_DIMS = (128, 192, 256, 384, 576)


@dataclasses.dataclass(frozen=True)
class AdaptSetting:
    family: str = "flagembedding"
    objective: str = "released"  # the paper objective lost ground after 100 steps (docs/results.md, "Quality")
    steps: int = 200  # the released objective measured flat from step 100 to 200; 400 paper steps did worse
    learning_rate: float = 1e-4
    batch_size: int = 8
    max_length: int = 128
    checkpoint_every: int = 100

    def name(self, seed: int) -> str:
        return (f"adapt-{self.family}-{self.objective}-{self.steps}x{self.batch_size}x{self.max_length}"
                f"-lr{self.learning_rate:g}-s{seed}")


@dataclasses.dataclass(frozen=True)
class FinetuneSetting:
    steps: int = 150
    batch_size: int = 8
    group_size: int = 2
    negatives: str = "bm25"  # or "adapted": mined from the adapted model's own dense run
    temperature: float = 0.01
    learning_rate: float = 1e-4
    query_max_length: int = 32
    passage_max_length: int = 128
    lora_dropout: float = LORA_DROPOUT_BEFORE_THE_LEVER  # a third of a CPU step (benchmarks/lora_dropout_cost.py)
    lora: bool = True  # False: every weight is trained (``llara finetune --full``)

    def name(self, base: str) -> str:
        if not self.lora:
            adapters = "-full"
        elif self.lora_dropout != LORA_DROPOUT_BEFORE_THE_LEVER:
            adapters = f"-d{self.lora_dropout:g}"
        else:
            adapters = ""
        return (f"{base}+ft-{self.negatives}-{self.steps}x{self.batch_size}x{self.group_size}"
                f"-t{self.temperature:g}-lr{self.learning_rate:g}-p{self.passage_max_length}{adapters}")


@dataclasses.dataclass(frozen=True)
class Arm:
    """One setting of the whole pipeline: an adaptation and, optionally, a finetuning on top of it."""

    label: str
    adapt: AdaptSetting
    finetune: FinetuneSetting | None


@dataclasses.dataclass(frozen=True)
class StartingPoint:
    """The model an adaptation starts from, encoded as its adapted models are (the adaptation's prompt family
    and passage length, not the plain model's paper family at 512 tokens): the learning curve's step 0."""

    family: str
    passage_max_length: int

    @property
    def name(self) -> str:
        return f"{MODEL}-{self.family}-p{self.passage_max_length}"


HEADLINE = Arm("headline", AdaptSetting(), FinetuneSetting())
QUICK = Arm("quick", AdaptSetting(steps=4, batch_size=4, max_length=64, checkpoint_every=2),
            FinetuneSetting(steps=4, batch_size=4, passage_max_length=64))
# One lever changed per arm, run at the first seed (the finetuning arms reuse the headline adaptation).
ABLATIONS = {
    "paper-objective": lambda arm: dataclasses.replace(
        arm, adapt=dataclasses.replace(arm.adapt, objective="paper"), finetune=None),
    "paper-family": lambda arm: dataclasses.replace(
        arm, adapt=dataclasses.replace(arm.adapt, family="paper"), finetune=None),
    "adapted-negatives": lambda arm: dataclasses.replace(
        arm, finetune=dataclasses.replace(arm.finetune, negatives="adapted")),
    "group-4": lambda arm: dataclasses.replace(
        arm, finetune=dataclasses.replace(arm.finetune, group_size=4)),
    "temperature-0.05": lambda arm: dataclasses.replace(
        arm, finetune=dataclasses.replace(arm.finetune, temperature=0.05)),
    "lora-dropout-0": lambda arm: dataclasses.replace(
        arm, finetune=dataclasses.replace(arm.finetune, lora_dropout=0.0)),
    # dropout 0 makes a CPU step 1.67x faster: the same finetuning time buys this many more steps
    "lora-dropout-0-250-steps": lambda arm: dataclasses.replace(
        arm, finetune=dataclasses.replace(arm.finetune, lora_dropout=0.0, steps=250)),
    # every weight trained, at `llara finetune --full`'s learning rate (LoRA's optimum is about ten times the
    # full finetuning optimum: the headline's 1e-4 and this 1e-5)
    "full-finetuning": lambda arm: dataclasses.replace(
        arm, finetune=dataclasses.replace(arm.finetune, lora=False, learning_rate=full_learning_rate())),
}


def full_learning_rate() -> float:
    from llara_cli.training.finetune_config import FULL_LEARNING_RATE

    return FULL_LEARNING_RATE


# ---------------------------------------------------------------------------------------------- data


def union_corpus(work: Path) -> Path:
    """The three corpora in one shuffled jsonl (ids prefixed by collection) in the cache, never in the project."""
    from llara_cli.storage.files import iter_jsonl

    path = work / "corpora" / "union.jsonl"
    if path.is_file():
        return path
    documents = [{"_id": f"{name}:{record['_id']}", "title": record.get("title", ""), "text": record.get("text", "")}
                 for name in COLLECTIONS for _, record in iter_jsonl(SHARED_DATA / name / "corpus.jsonl")]
    random.Random(UNION_CORPUS_SEED).shuffle(documents)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_lines(path, (json.dumps(document, ensure_ascii=False) for document in documents))
    return path


def sample_collection(name: str, work: Path, queries_per_split: int) -> Path:
    """A small BEIR copy in the cache (``--quick``): a few judged queries per split, their judged documents and
    as many random others again."""
    from llara_cli.data.corpus import iter_documents, queries_for_search
    from llara_cli.data.qrels import read_qrels

    source, target = SHARED_DATA / name, work / "collections" / name
    if (target / "corpus.jsonl").is_file():
        return target
    rng = random.Random(UNION_CORPUS_SEED)
    splits = ("test", "train") if name == TRAIN_COLLECTION else ("test",)
    queries, qrels = [], {}
    for split in splits:
        chosen = rng.sample(queries_for_search(source, split), queries_per_split)
        queries += chosen
        qrels[split] = [q for q in read_qrels(source, split) if q.query_id in {c.query_id for c in chosen}]
    judged = {qrel.doc_id for split_qrels in qrels.values() for qrel in split_qrels}
    documents = list(iter_documents(source))
    others = rng.sample([d for d in documents if d.doc_id not in judged], len(judged))
    keep = judged | {d.doc_id for d in others}
    write_lines(target / "corpus.jsonl", (json.dumps({"_id": d.doc_id, "text": d.text}) for d in documents
                                          if d.doc_id in keep))
    write_lines(target / "queries.jsonl", (json.dumps({"_id": q.query_id, "text": q.text}) for q in queries))
    for split, split_qrels in qrels.items():
        write_lines(target / "qrels" / f"{split}.tsv", ["query-id\tcorpus-id\tscore",
                                                        *(f"{q.query_id}\t{q.doc_id}\t{q.relevance}" for q in split_qrels)])
    return target


def write_lines(path: Path, lines) -> None:
    from llara_cli.storage.files import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as handle:
        handle.writelines(line + "\n" for line in lines)


class Collection:
    """A test collection read once: documents, test (and train) queries, qrels and the BM25 runs."""

    def __init__(self, name: str, work: Path, sample: int = 0) -> None:
        from llara_cli.data.corpus import queries_for_search, read_corpus
        from llara_cli.data.qrels import read_qrels

        self.name = name
        self.directory = directory = sample_collection(name, work, sample) if sample else SHARED_DATA / name
        documents = read_corpus(directory)
        self.doc_ids, self.doc_texts = [d.doc_id for d in documents], [d.text for d in documents]
        self.splits = {"test": queries_for_search(directory, "test")}
        if name == TRAIN_COLLECTION:
            self.splits["train"] = queries_for_search(directory, "train")
        self.qrels = {split: read_qrels(directory, split) for split in self.splits}
        self.bm25 = {split: bm25_run(directory, queries, work / "runs" / f"{name}-{split}-bm25.trec")
                     for split, queries in self.splits.items()}


# ------------------------------------------------------------------------------------------- models


def adapt(setting: AdaptSetting, seed: int, work: Path) -> Path:
    from llara_cli.training import AdaptConfig, run_adaptation

    out = work / "models" / setting.name(seed)
    if not out.is_dir():
        stage(f"adapting {MODEL}: {setting.name(seed)}")
        started = time.perf_counter()
        run_adaptation(AdaptConfig(
            corpus=union_corpus(work), out_dir=out, model=MODEL, prompt_family=setting.family,
            objective=setting.objective, learning_rate=setting.learning_rate, precision=TRAIN_PRECISION,
            max_length=setting.max_length, batch_size=setting.batch_size, max_steps=setting.steps,
            save_steps=setting.checkpoint_every, save_total_limit=0, keep_checkpoints=True,
            logging_steps=10, seed=seed, resume=True))
        record_time(work, setting.name(seed), time.perf_counter() - started)
    return out


def mining_run(setting: FinetuneSetting, adapted: Path, evaluator: Evaluator) -> Path:
    """The TREC run hard negatives are mined from: BM25, or the adapted model's dense run, on SciFact train."""
    train = evaluator.collections[TRAIN_COLLECTION]
    if setting.negatives == "bm25":
        return evaluator.work / "runs" / f"{TRAIN_COLLECTION}-train-bm25.trec"
    from llara_cli.data.runs import write_run

    path = evaluator.work / "runs" / f"{TRAIN_COLLECTION}-train-{adapted.name}.trec"
    if not path.is_file():
        write_run(path, evaluator.dense_run(adapted, train, "train", depth=NEGATIVE_DEPTH), tag=adapted.name)
    return path


def finetune(setting: FinetuneSetting, adapted: Path, seed: int, evaluator: Evaluator) -> Path:
    from llara_cli.data.finetune import MiningSettings, collection_files, mine_training_data
    from llara_cli.training.finetune import FinetuneConfig, run_finetuning

    work = evaluator.work
    out = work / "models" / setting.name(adapted.name)
    if out.is_dir():
        return out
    run_path = mining_run(setting, adapted, evaluator)
    mining = MiningSettings(skip=NEGATIVE_SKIP, depth=NEGATIVE_DEPTH, num_negatives=NEGATIVES_PER_QUERY, seed=seed)
    train = evaluator.collections[TRAIN_COLLECTION].directory
    data = mine_training_data(collection_files(train, split="train"), run_path, mining)
    stage(f"finetuning {out.name} on {len(data.examples)} SciFact train queries")
    started = time.perf_counter()
    run_finetuning(FinetuneConfig(
        out_dir=out, train=train, negatives_from=run_path, model=str(adapted),
        precision=TRAIN_PRECISION, skip=NEGATIVE_SKIP, depth=NEGATIVE_DEPTH, num_negatives=NEGATIVES_PER_QUERY,
        query_max_length=setting.query_max_length, passage_max_length=setting.passage_max_length,
        group_size=setting.group_size, batch_size=setting.batch_size, temperature=setting.temperature,
        learning_rate=setting.learning_rate, lora=setting.lora, lora_dropout=setting.lora_dropout,
        max_steps=setting.steps,
        save_steps=max(25, setting.steps // 3), logging_steps=10, seed=seed, resume=True), data=data)
    record_time(work, out.name, time.perf_counter() - started)
    return out


def checkpoints(adapted: Path) -> list[tuple[int, Path]]:
    """``(step, model directory)`` of an adaptation's kept checkpoints, the final model last."""
    kept = sorted((int(path.name.split("-")[1]), path) for path in (adapted / "checkpoints").glob("checkpoint-*"))
    final_step = json.loads((adapted / "adapt_config.json").read_text())["fingerprint"]["max_steps"]
    return [(step, path) for step, path in kept if step < final_step] + [(final_step, adapted)]


def record_time(work: Path, name: str, seconds: float) -> None:
    from llara_cli.storage.files import write_json

    path = work / "times.json"
    times = json.loads(path.read_text()) if path.is_file() else {}
    times[name] = round(seconds, 1)
    write_json(path, times)


# --------------------------------------------------------------------------------------- evaluation


def system_name(model: Path | str | StartingPoint) -> str:
    """What a model's cached embeddings and measures are named after: ``<run>@checkpoint-N`` for a checkpoint."""
    if isinstance(model, StartingPoint):
        return model.name
    if not isinstance(model, Path):
        return model
    return f"{model.parent.parent.name}@{model.name}" if model.name.startswith("checkpoint-") else model.name


class Evaluator:
    """Dense runs and measures of any model directory on the full test collections, cached in ``work``."""

    def __init__(self, work: Path, dtype: str, sample: int = 0) -> None:
        self.work = work
        self.dtype = dtype
        self.cache = EmbeddingCache(work)
        self.collections = {name: Collection(name, work, sample) for name in COLLECTIONS}
        self._encoder: tuple[str, object] | None = None

    def encoder(self, model: Path | str | StartingPoint):
        import torch

        from llara_cli.encode.encoder import LlaraEncoder
        from llara_cli.runtime.precision import resolve_dtype

        if self._encoder is None or self._encoder[0] != system_name(model):
            torch.manual_seed(0)  # the raw flagembedding model draws its new marker embeddings
            if isinstance(model, StartingPoint):
                encoder = LlaraEncoder.load(MODEL, dtype=resolve_dtype(self.dtype), prompt_family=model.family)
                encoder.model.config = dataclasses.replace(encoder.config,
                                                           passage_max_length=model.passage_max_length)
            else:
                encoder = LlaraEncoder.load(str(model), dtype=resolve_dtype(self.dtype))
            self._encoder = (system_name(model), encoder)
        return self._encoder[1]

    def embeddings(self, model: Path | str | StartingPoint, collection: Collection, split: str):
        """``(query_vectors, passage_vectors)`` of a collection's split, encoded once and cached."""
        system = system_name(model)
        queries = collection.splits[split]
        docs = self.cache.get(system, f"{collection.name}-passages", collection.doc_ids, collection.doc_texts,
                              lambda texts: self.encoder(model).encode_passages(texts))
        query_vectors = self.cache.get(system, f"{collection.name}-{split}-queries",
                                       [q.query_id for q in queries], [q.text for q in queries],
                                       lambda texts: self.encoder(model).encode_queries(texts))
        return query_vectors, docs

    def dense_run(self, model: Path | str | StartingPoint, collection: Collection, split: str, depth: int = SEARCH_DEPTH,
                  whiten: int | None = None) -> dict:
        """Exact inner-product top ``depth``; with ``whiten``, after the corpus's whitening (``llara index --whiten``)."""
        from llara_cli.index.whitening import apply_whitening, fit_whitening

        query_vectors, docs = self.embeddings(model, collection, split)
        if whiten is not None:
            transform = fit_whitening(docs, whiten)
            query_vectors, docs = apply_whitening(transform, query_vectors), apply_whitening(transform, docs)
        return dense_search(query_vectors, docs, [q.query_id for q in collection.splits[split]], collection.doc_ids,
                            k=depth)

    def whitened(self, model: Path | str) -> dict:
        """The whitening dimension best on SciFact train (nDCG@10 per candidate) and, per collection, the
        measures of the whitened dense run against BM25."""
        path = self.work / "measures" / f"{system_name(model)}+whitened.json"
        if path.is_file():
            return json.loads(path.read_text())
        train = self.collections[TRAIN_COLLECTION]
        embedding_dim = self.embeddings(model, train, "train")[1].shape[1]
        # a whitening of dimension d needs more than d passages to estimate (the --quick corpora are small)
        estimable = min(embedding_dim, min(len(c.doc_ids) for c in self.collections.values()) - 1)
        candidates = [dim for dim in WHITENING_DIMS if dim <= estimable] or [estimable]
        on_train = {dim: evaluate({"bm25": train.bm25["train"], "dense": self.dense_run(model, train, "train", whiten=dim)},
                                  train.qrels["train"])["dense"]["aggregates"][HEADLINE_MEASURE] for dim in candidates}
        chosen = max(candidates, key=lambda dim: on_train[dim])
        result: dict = {"whitening_dim": chosen, "train_by_dim": on_train}
        for name, collection in self.collections.items():
            runs = {"bm25": collection.bm25["test"], "whitened": self.dense_run(model, collection, "test", whiten=chosen)}
            result[name] = evaluate(runs, collection.qrels["test"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2, sort_keys=True))
        return result

    def measure(self, model: Path | str | StartingPoint, *, fusion: bool) -> dict:
        """Per collection: the dense run's measures vs BM25, and (``fusion``) the tuned and robust fusions'."""
        from llara_cli.search.anchored_fusion import ROBUST_DENSE_WEIGHT, anchored_fusion, tune_dense_weight

        path = self.work / "measures" / f"{system_name(model)}{'+fusion' if fusion else ''}.json"
        if path.is_file():
            return json.loads(path.read_text())
        result: dict = {}
        if fusion:
            train = self.collections[TRAIN_COLLECTION]
            tuned = tune_dense_weight([train.bm25["train"], self.dense_run(model, train, "train")],
                                      train.qrels["train"], depth=SEARCH_DEPTH)
            result["tuned_weight"] = tuned.to_dict()
        for name, collection in self.collections.items():
            runs = {"bm25": collection.bm25["test"], "dense": self.dense_run(model, collection, "test")}
            if fusion:
                pair = [runs["bm25"], runs["dense"]]
                runs["tuned"] = anchored_fusion(pair, result["tuned_weight"]["dense_weight"], depth=SEARCH_DEPTH)
                runs["robust"] = anchored_fusion(pair, ROBUST_DENSE_WEIGHT, depth=SEARCH_DEPTH)
            result[name] = evaluate(runs, collection.qrels["test"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2, sort_keys=True))
        return result


def evaluate(runs: dict[str, dict], qrels) -> dict:
    from llara_cli.data.runs import ScoredDoc
    from llara_cli.evaluation import evaluate_runs

    scored = {system: [ScoredDoc(query_id, doc_id, score) for query_id, results in run.items()
                       for doc_id, score in results] for system, run in runs.items()}
    payload = evaluate_runs(qrels, scored, measures=list(MEASURES), baseline="bm25").to_dict(per_query=False)
    return {system: {"aggregates": payload["runs"][system]["aggregates"],
                     "p_vs_bm25": {measure: comparison["p_value"]
                                   for measure, comparison in payload["runs"][system]["comparisons"].items()}}
            for system in runs}


# -------------------------------------------------------------------------------------------- the run


def measured(model: Path, evaluator: Evaluator, *, fusion: bool) -> dict:
    """A model's measures per collection: dense (and fusions) plus the whitened dense run."""
    result = {"model": model.name, **evaluator.measure(model, fusion=fusion)}
    whitened = evaluator.whitened(model)
    result["whitening_dim"] = whitened["whitening_dim"]
    for name in COLLECTIONS:
        result[name] = {**result[name], "whitened": whitened[name]["whitened"]}
    return result


def measured_on(machine: dict | None = None) -> dict:
    """When and on what kind of CPU a seed was measured (seeds of one report may come from several sessions):
    read from ``machine`` (a report's ``machine`` entry), or from this machine now."""
    from benchmarks._common import machine_description

    machine = machine or machine_description()
    cpu = machine["cpu"]
    return {"date": machine["date"], "cpu": cpu["model"], "native_bf16": cpu["native_bf16"],
            "torch_capability": cpu["torch_capability"]}


def run_arm(arm: Arm, seed: int, evaluator: Evaluator, *, with_finetuning: bool = True,
            measure_adaptation: bool = True) -> dict:
    """One arm at one seed; without ``measure_adaptation`` the adapted model is trained but only named (its
    evaluation, a full pass over every collection, is left out)."""
    adapted = adapt(arm.adapt, seed, evaluator.work)
    result = {"arm": arm.label, "seed": seed, "measured_on": measured_on(),
              "adapted": measured(adapted, evaluator, fusion=False) if measure_adaptation else {"model": adapted.name}}
    if arm.finetune is not None and with_finetuning:
        finetuned = finetune(arm.finetune, adapted, seed, evaluator)
        result["adapted+ft"] = measured(finetuned, evaluator, fusion=True)
    return result


def earlier_seeds(report: Path, headline: Arm, seeds: list[int]) -> tuple[list[dict], dict]:
    """The per-seed results and stage times of an earlier report of the same headline setting.

    Each seed keeps the date and CPU it was measured on (read from the report's machine where the seed does not
    carry its own). Raises ``SystemExit`` with one line for a file that is not such a report, a report of another
    setting, or one holding a seed of ``seeds``.
    """
    try:
        earlier = json.loads(report.read_text(encoding="utf-8"))
        recorded, machine = earlier["seeds"], earlier["machine"]
        setting = earlier["headline"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SystemExit(f"{report}: not a quality.py report ({type(error).__name__}: {error})") from None
    if with_added_fields(setting) != dataclasses.asdict(headline):
        raise SystemExit(f"{report}: its headline setting differs from this run's; seeds of two settings do not "
                         "form one spread")
    clash = sorted({result["seed"] for result in recorded} & set(seeds))
    if clash:
        raise SystemExit(f"{report}: already holds seed(s) {', '.join(map(str, clash))}; leave them out of --seeds")
    default = measured_on(machine)
    return ([{**result, "measured_on": result.get("measured_on", default)} for result in recorded],
            earlier.get("stage_seconds", {}))


def joined_ablation(report: Path | None, ablation: list[dict], arms: list[dict]) -> tuple[list[dict], list[dict]]:
    """This run's arm results and settings after those of an earlier report (read by :func:`earlier_seeds`
    first) that this run did not measure again: the report an invocation writes keeps the arms of the one it
    joins."""
    if report is None:
        return ablation, arms
    earlier = json.loads(report.read_text(encoding="utf-8"))
    measured_now = {(entry["arm"], entry["seed"]) for entry in ablation}
    labels_now = {arm["label"] for arm in arms}
    return ([entry for entry in earlier.get("ablation", []) if (entry["arm"], entry["seed"]) not in measured_now]
            + ablation,
            [arm for arm in earlier.get("ablation_arms", []) if arm["label"] not in labels_now] + arms)


def earlier_curve(report: Path | None) -> dict | None:
    """The learning curve of an earlier report (read by :func:`earlier_seeds` first), kept by a run without one;
    a report from before the curve carried its seed and machine holds none at this setting."""
    if report is None:
        return None
    curve = json.loads(report.read_text(encoding="utf-8")).get("curve")
    return curve if isinstance(curve, dict) else None


def check_headline_seeds(report: Path, earlier: list[dict], arm_seeds: list[int]) -> None:
    """Raises ``SystemExit`` with one line where ``report`` lacks a headline seed the arms run at."""
    missing = sorted(set(arm_seeds) - {result["seed"] for result in earlier})
    if missing:
        raise SystemExit(f"{report}: holds no headline seed {', '.join(map(str, missing))} to compare the arms with")


def with_added_fields(setting: dict) -> dict:
    """A report's setting with the fields added since it was written, at the value it ran at."""
    if not isinstance(setting, dict):
        return setting
    completed = dict(setting)
    for stage_name, added in SETTING_ADDED_FIELDS.items():
        if isinstance(setting.get(stage_name), dict):
            completed[stage_name] = {**added, **setting[stage_name]}
    return completed


def headline_value(result: dict, stage_name: str, collection: str, system: str = "dense") -> float:
    return result[stage_name][collection][system]["aggregates"][HEADLINE_MEASURE]


def summarise(results: list[dict]) -> dict:
    """Mean and sample standard deviation over seeds of every (stage, collection, system, measure)."""
    summary: dict = {}
    stages = (("adapted", ("dense", "whitened")), ("adapted+ft", ("dense", "whitened", "tuned", "robust")))
    for stage_name, systems in stages:
        present = [result for result in results if stage_name in result]
        if not present:
            continue
        for collection in COLLECTIONS:
            for system in ("bm25", *systems):
                for measure in MEASURES:
                    values = [r[stage_name][collection][system]["aggregates"][measure] for r in present]
                    summary.setdefault(stage_name, {}).setdefault(collection, {}).setdefault(system, {})[measure] = {
                        "mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                        "values": values}
    return summary


def goals(summary: dict) -> dict:
    out = {}
    bm25 = {name: summary["adapted"][name]["bm25"][HEADLINE_MEASURE]["mean"] for name in COLLECTIONS}
    for name in COLLECTIONS:
        for system in ("dense", "whitened"):
            adapted = summary["adapted"][name][system][HEADLINE_MEASURE]["mean"]
            out[f"a:{name}:{system}"] = {"ratio": adapted / bm25[name], "goal": GOAL_ADAPTED,
                                         "met": adapted >= GOAL_ADAPTED * bm25[name]}
    if "adapted+ft" in summary:
        finetuned = summary["adapted+ft"][TRAIN_COLLECTION]["dense"][HEADLINE_MEASURE]["mean"]
        out[f"b:{TRAIN_COLLECTION}"] = {"ratio": finetuned / bm25[TRAIN_COLLECTION], "goal": GOAL_FINETUNED,
                                        "met": finetuned >= GOAL_FINETUNED * bm25[TRAIN_COLLECTION]}
        for name in COLLECTIONS:
            fused = summary["adapted+ft"][name]["tuned"][HEADLINE_MEASURE]["mean"]
            out[f"c:{name}"] = {"delta": fused - bm25[name], "met": fused >= bm25[name]}
    return out


def learning_curve(arm: Arm, seed: int, evaluator: Evaluator) -> list[dict]:
    """nDCG@10 of the adaptation's starting point (step 0) and of each kept checkpoint, per collection."""
    adapted = adapt(arm.adapt, seed, evaluator.work)
    points = []
    for step, model in [(0, StartingPoint(arm.adapt.family, arm.adapt.max_length)), *checkpoints(adapted)]:
        measured = evaluator.measure(model, fusion=False)
        points.append({"step": step, **{name: measured[name]["dense"]["aggregates"][HEADLINE_MEASURE]
                                        for name in COLLECTIONS}})
    return points


def markdown(result: dict) -> str:
    summary = result["summary"]
    seeds = len(result["seeds"])
    finetuned = sum("adapted+ft" in r for r in result["seeds"])
    provenances = "; ".join(f"seed {r['seed']}: {provenance(r['measured_on'])}" for r in result["seeds"])
    lines = [f"nDCG@10, mean ± sample std over {seeds} seed(s) ({finetuned} finetuned); "
             "▲/▼: every seed significantly above/below BM25 "
             "(paired t-test, p < 0.05).", "", f"Measured: {provenances}.", "", "| run | " + " | ".join(COLLECTIONS) + " |",
             "|---|" + "---:|" * len(COLLECTIONS)]
    rows = [("BM25", "adapted", "bm25"), ("adapted", "adapted", "dense"),
            ("adapted, whitened index", "adapted", "whitened")]
    if "adapted+ft" in summary:
        rows += [("adapted + finetuned", "adapted+ft", "dense"),
                 ("adapted + finetuned, whitened index", "adapted+ft", "whitened"),
                 ("tuned fusion (BM25, adapted + finetuned)", "adapted+ft", "tuned"),
                 ("robust fusion (BM25, adapted + finetuned)", "adapted+ft", "robust")]
    for label, stage_name, system in rows:
        cells = []
        for name in COLLECTIONS:
            entry = summary[stage_name][name][system][HEADLINE_MEASURE]
            p_values = [r[stage_name][name][system]["p_vs_bm25"].get(HEADLINE_MEASURE) for r in result["seeds"]
                        if stage_name in r]
            deltas = [v - b for v, b in zip(entry["values"], summary[stage_name][name]["bm25"][HEADLINE_MEASURE]["values"])]
            marker = ""
            if system != "bm25" and all(p is not None and p < 0.05 for p in p_values):
                marker = "▲" if all(d > 0 for d in deltas) else "▼" if all(d < 0 for d in deltas) else ""
            spread = f" ± {entry['std']:.3f}" if len(entry["values"]) > 1 and system != "bm25" else ""
            cells.append(f"{entry['mean']:.3f}{spread}{marker}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if result.get("ablation"):
        lines += ablation_lines(result)
    if result.get("curve"):
        curve = result["curve"]
        lines += ["", f"Learning curve (headline adaptation, seed {curve['seed']}; step 0: the raw model in the "
                  f"headline's prompt family and passage length), measured {provenance(curve['measured_on'])}:", "",
                  "| step | " + " | ".join(COLLECTIONS) + " |", "|---:|" + "---:|" * len(COLLECTIONS)]
        lines += [f"| {p['step']} | " + " | ".join(f"{p[name]:.3f}" for name in COLLECTIONS) + " |"
                  for p in curve["points"]]
    return "\n".join(lines) + "\n"


def ablation_lines(result: dict) -> list[str]:
    """The ablation table: per seed, the headline's rows, then each arm's with its difference from them. An arm
    that reuses the headline adaptation shows only its finetuning row, unless it was measured elsewhere (another
    day or CPU than its headline seed: the adaptation was run again there), which a note below the table names."""
    ablation_seeds = sorted({entry["seed"] for entry in result["ablation"]})
    headline_at = {entry["seed"]: entry for entry in result["seeds"]}
    times = result.get("stage_seconds", {})

    def row(entry: dict, stage_name: str, reference: dict | None) -> str:
        cells = []
        for name in COLLECTIONS:
            value = headline_value(entry, stage_name, name)
            difference = "" if reference is None else f" ({value - headline_value(reference, stage_name, name):+.3f})"
            cells.append(f"{value:.3f}{difference}")
        seconds = times.get(entry[stage_name]["model"]) if stage_name == "adapted+ft" else None
        return (f"| {entry['arm']} | {entry['seed']} | {stage_name} | " + " | ".join(cells)
                + f" | {'' if seconds is None else f'{seconds:.0f}'} |")

    lines = ["", f"Ablation (one lever changed; seed(s) {', '.join(map(str, ablation_seeds))}; in brackets the "
             "difference from the headline at the same seed; finetuning time in seconds):", "",
             "| arm | seed | stage | " + " | ".join(COLLECTIONS) + " | finetune s |",
             "|---|---:|---|" + "---:|" * (len(COLLECTIONS) + 1)]
    elsewhere = []
    for seed in ablation_seeds:
        headline = headline_at[seed]
        lines += [row(headline, stage_name, None) for stage_name in ("adapted", "adapted+ft") if stage_name in headline]
        for entry in (e for e in result["ablation"] if e["seed"] == seed):
            measured_elsewhere = "measured_on" in entry and entry["measured_on"] != headline.get("measured_on")
            if measured_elsewhere:
                elsewhere.append(entry)
            own_adaptation = measured_elsewhere or entry["adapted"]["model"] != headline["adapted"]["model"]
            if adaptation_measured(entry) and own_adaptation:
                lines.append(row(entry, "adapted", headline))
            if "adapted+ft" in entry:
                lines.append(row(entry, "adapted+ft", headline if "adapted+ft" in headline else None))
    if elsewhere:
        lines += ["", "Measured elsewhere than their headline seed: " + "; ".join(
            f"{entry['arm']} at seed {entry['seed']}: {provenance(entry['measured_on'])}"
            f"{'' if adaptation_measured(entry) else ' (its adaptation, trained again there, not evaluated)'}"
            for entry in elsewhere) + "."]
    return lines


def adaptation_measured(entry: dict) -> bool:
    """Whether an arm's adapted model was evaluated (``run_arm(..., measure_adaptation=False)`` only names it)."""
    return COLLECTIONS[0] in entry["adapted"]


def provenance(measured_on: dict) -> str:
    """``2026-12-03, <CPU> (native bf16)``: when and on what a seed or an arm was measured."""
    return f"{measured_on['date']}, {measured_on['cpu']}{' (native bf16)' if measured_on['native_bf16'] else ''}"


def plot(result: dict, out_png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = result["summary"]
    figure, (curve_axes, bar_axes) = plt.subplots(1, 2, figsize=(11, 4))
    for index, name in enumerate(COLLECTIONS):
        colour = f"C{index}"
        bm25 = summary["adapted"][name]["bm25"][HEADLINE_MEASURE]["mean"]
        if result.get("curve"):
            points = result["curve"]["points"]
            curve_axes.plot([p["step"] for p in points], [p[name] for p in points], "o-",
                            color=colour, label=name)
        curve_axes.axhline(GOAL_ADAPTED * bm25, color=colour, linestyle=":", linewidth=1)
    if not result.get("curve"):
        curve_axes.text(0.5, 0.5, "no learning curve in this run (--no-curve)", ha="center", va="center",
                        transform=curve_axes.transAxes)
    curve_axes.set_xlabel("adaptation steps")
    curve_axes.set_ylabel("nDCG@10 (dotted: 0.5 x BM25)")
    curve_axes.set_title("adaptation alone, learning curve")
    if result.get("curve"):
        curve_axes.legend(fontsize=8)
    systems = [("BM25", "adapted", "bm25"), ("adapted", "adapted", "dense"), ("adapted, whitened", "adapted", "whitened")]
    if "adapted+ft" in summary:
        systems += [("adapted+ft", "adapted+ft", "dense"), ("tuned fusion", "adapted+ft", "tuned")]
    width = 0.8 / len(systems)
    for offset, (label, stage_name, system) in enumerate(systems):
        entries = [summary[stage_name][name][system][HEADLINE_MEASURE] for name in COLLECTIONS]
        bar_axes.bar([i + offset * width for i in range(len(COLLECTIONS))], [e["mean"] for e in entries], width,
                     yerr=[e["std"] for e in entries], capsize=3, label=label)
    bar_axes.set_xticks([i + 0.4 - width / 2 for i in range(len(COLLECTIONS))], COLLECTIONS)
    bar_axes.set_ylabel(f"nDCG@10 (mean ± std, {len(result['seeds'])} seeds)")
    bar_axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out_png, dpi=120)
    plt.close(figure)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, help="cache directory (default: $LLARA_HOME/benchmarks/quality)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--finetune-seeds", type=int, metavar="N",
                        help="finetune only the first N seeds (the others are adapted and evaluated alone)")
    parser.add_argument("--ablations", default="all", help=f"comma-separated arms ({', '.join(ABLATIONS)}), all or none")
    parser.add_argument("--ablation-seeds", type=int, default=1, metavar="N",
                        help="run each ablation arm at the first N seeds (default 1)")
    parser.add_argument("--no-curve", action="store_true", help="skip the learning curve")
    parser.add_argument("--quick", action="store_true", help="a tiny budget: checks the plumbing, not the science")
    parser.add_argument("--dtype", default="auto", help="inference dtype (auto: bf16 where native, else fp32)")
    parser.add_argument("--fresh", action="store_true", help="delete the cache directory first")
    parser.add_argument("--earlier-seeds", type=Path, metavar="REPORT",
                        help="a quality.json of the same headline setting whose seeds join this run's")
    parser.add_argument("--no-headline", action="store_true",
                        help="run only the ablation arms, at --seeds, against the headline seeds of --earlier-seeds")
    parser.add_argument("--unmeasured-arm-adaptation", action="store_true",
                        help="do not evaluate the adaptation of arms that keep the headline's (trained again where "
                             "the headline seed came from elsewhere): saves a full evaluation per arm and seed")
    args = parser.parse_args()
    if args.no_headline and args.earlier_seeds is None:
        parser.error("--no-headline compares the arms with an earlier report's headline: give --earlier-seeds")
    unknown = set(args.ablations.split(",")) - {*ABLATIONS, "all", "none"}
    if unknown:
        parser.error(f"unknown ablation arm(s): {', '.join(sorted(unknown))}")
    return args


def main() -> None:
    from llara_cli.runtime.home import llara_home

    args = parse_args()
    name = "quality_quick" if args.quick else "quality"
    work = args.work or llara_home() / "benchmarks" / name
    if args.fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    headline = QUICK if args.quick else HEADLINE
    labels = {"none": [], "all": list(ABLATIONS)}.get(args.ablations, args.ablations.split(","))
    arms = [dataclasses.replace(ABLATIONS[label](headline), label=label) for label in labels]
    started = time.perf_counter()
    evaluator = Evaluator(work, args.dtype, sample=QUICK_QUERIES if args.quick else 0)
    finetune_seeds = len(args.seeds) if args.finetune_seeds is None else args.finetune_seeds
    headline_seeds = [] if args.no_headline else args.seeds
    earlier, earlier_times = (earlier_seeds(args.earlier_seeds, headline, headline_seeds) if args.earlier_seeds
                              else ([], {}))
    if args.no_headline:
        check_headline_seeds(args.earlier_seeds, earlier, args.seeds[:args.ablation_seeds])
    seeds = [run_arm(headline, seed, evaluator, with_finetuning=position < finetune_seeds)
             for position, seed in enumerate(headline_seeds)]
    seeds = sorted(earlier + seeds, key=lambda result: result["seed"])
    curve = (earlier_curve(args.earlier_seeds) if args.no_curve else
             {"seed": args.seeds[0], "measured_on": measured_on(),
              "points": learning_curve(headline, args.seeds[0], evaluator)})
    ablation, arm_settings = joined_ablation(
        args.earlier_seeds,
        [run_arm(arm, seed, evaluator,
                 measure_adaptation=not (args.unmeasured_arm_adaptation and arm.adapt == headline.adapt))
         for arm in arms for seed in args.seeds[:args.ablation_seeds]],
        [dataclasses.asdict(arm) for arm in arms])
    summary = summarise(seeds)
    result = {"benchmark": "quality", "name": name, "model": MODEL,
              "headline": dataclasses.asdict(headline), "ablation_arms": arm_settings,
              "seeds": seeds, "summary": summary, "goals": goals(summary), "curve": curve, "ablation": ablation,
              "stage_seconds": {**earlier_times, **(json.loads((work / "times.json").read_text())
                                                    if (work / "times.json").is_file() else {})},
              "wall_s_this_invocation": round(time.perf_counter() - started, 1)}
    save_report(name, result, markdown(result), plot)


if __name__ == "__main__":
    main()
