"""A user's own corpus, no labels (issue #32): raw -> adapted on the corpus's own text with the model's recipe ->
+ unsupervised pairs finetuning (``--pairs-from corpus``, negatives from the adapted model's own run) -> + the
label-free whitening choice (``--whiten auto``) -> + fusion with BM25 (the robust weight 0.2, and a weight chosen
on pseudo-queries), nDCG@10 against BM25 on the collection's test qrels -- which are never used for any choice.

    python benchmarks/own_corpus.py --collection cranfield --work DIR
    python benchmarks/own_corpus.py --collection cranfield --adapt-steps 40 --pairs-steps 40 --work DIR   # scaled

Every stage is cached in ``--work`` (models, embeddings, runs), so an interrupted run continues. Besides the
label-free choices, the labelled best whitening dim and fusion weight are computed *for reporting only*: how
often the label-free choice matches them. One seed a run (``--seed``; 42 by default). Results:
``benchmarks/results/own_corpus_<collection>[-seed<N>].{json,md,png}`` (the sizes actually run are in the JSON:
steps, corpus and query counts); ``--summarize`` gathers every full-collection run into
``own_corpus_summary.{json,md}``: per collection and system, the mean and spread over seeds, against the goals.

    python benchmarks/own_corpus.py --collection cacm --seed 7 --work DIR
    python benchmarks/own_corpus.py --summarize
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import SHARED_DATA, save_report
from benchmarks.finetune_effect import (
    TRAIN_NEGATIVE_DEPTH,
    TRAIN_NEGATIVE_SKIP,
    TRAIN_NEGATIVES,
    EmbeddingCache,
    bm25_run,
    bm25_train_negatives,
    dense_search,
    stage,
)

MODEL = "smollm2-135m"
MEASURE = "nDCG@10"
WHITEN_CANDIDATES = (128, 192, 256, 384)
ROBUST_WEIGHT = 0.2
PSEUDO_QUERIES = 200


def evaluate(runs: dict[str, dict], qrels) -> dict:
    from llara_cli.data.runs import ScoredDoc
    from llara_cli.evaluation import evaluate_runs

    scored = {system: [ScoredDoc(query_id, doc_id, score) for query_id, results in run.items()
                       for doc_id, score in results] for system, run in runs.items()}
    payload = evaluate_runs(qrels, scored, measures=[MEASURE], baseline="bm25").to_dict(per_query=False)
    return {system: {"ndcg10": payload["runs"][system]["aggregates"][MEASURE],
                     "p_vs_bm25": payload["runs"][system]["comparisons"].get(MEASURE, {}).get("p_value")
                     if system != "bm25" else None} for system in runs}


def sub_collection(source: Path, work: Path, max_queries: int | None, max_docs: int | None) -> Path:
    """A BEIR directory of the first ``max_queries`` test queries, their judged documents and the corpus's first
    other documents up to ``max_docs``."""
    target = work / "collections" / f"{source.name}-{max_queries or 'all'}q-{max_docs or 'all'}d"
    if (target / "qrels" / "test.tsv").is_file():
        return target
    lines = (source / "qrels" / "test.tsv").read_text().splitlines()
    judgements = [line.split("\t") for line in lines[1:] if line.strip()]
    query_ids = sorted({query_id for query_id, _, _ in judgements}, key=lambda q: (len(q), q))[:max_queries]
    judged = {doc_id for query_id, doc_id, _ in judgements if query_id in query_ids}
    records = [json.loads(line) for line in (source / "corpus.jsonl").read_text().splitlines() if line.strip()]
    kept = [record for record in records if record["_id"] in judged]
    kept += [record for record in records if record["_id"] not in judged][:max(0, (max_docs or len(records)) - len(kept))]
    kept_ids = {record["_id"] for record in kept}
    (target / "qrels").mkdir(parents=True, exist_ok=True)
    (target / "corpus.jsonl").write_text("".join(json.dumps(record) + "\n" for record in kept))
    queries = [json.loads(line) for line in (source / "queries.jsonl").read_text().splitlines() if line.strip()]
    (target / "queries.jsonl").write_text("".join(json.dumps(query) + "\n" for query in queries
                                                  if query["_id"] in query_ids))
    (target / "qrels" / "test.tsv").write_text(lines[0] + "\n" + "".join(
        "\t".join(row) + "\n" for row in judgements if row[0] in query_ids and row[1] in kept_ids))
    return target


FIRST_SUPERVISED_STEPS = 60  # the step count of the first --supervised-steps runs (their cache names carry none)
DEFAULT_SEED = 42  # TrainingRunConfig's: the seed of the runs made before --seed existed (their cache names)


def adapt(corpus: Path, out: Path, steps: int | None, seed: int = DEFAULT_SEED) -> Path:
    from llara_cli.training.adapt import AdaptConfig, run_adaptation
    from llara_cli.training.recipes import ADAPT, apply_recipe, describe_choices

    if (out / "llara_config.json").is_file():
        return out
    config, choices = apply_recipe(AdaptConfig(corpus=corpus, out_dir=out, model=MODEL, precision="auto",
                                               max_steps=steps or 1, save_steps=50, overwrite=True,
                                               shuffle_buffer=1000, seed=seed),
                                   ADAPT, explicit={"max_steps"} if steps else ())
    stage("\n".join(describe_choices(MODEL, choices)))
    run_adaptation(config)
    return out


def trained_query_prompt(model_dir: Path, corpus: Path, seed: int):
    """The query prompt ``llara adapt`` / ``llara finetune`` chose for ``model_dir`` after training (label-free, on
    the corpus's pseudo-queries); a model trained before the choice existed (the choice does not change the
    weights) gets it now, as the command would have made it."""
    from llara_cli.data.adaptation import DataFormat
    from llara_cli.model.config import LlaraConfig
    from llara_cli.training.query_prompt_choice import CHOICE_FILE, record_query_prompt

    if not (model_dir / CHOICE_FILE).is_file():
        stage(f"{model_dir.name}: " + record_query_prompt(model_dir, "auto", corpus, DataFormat.CORPUS,
                                                           seed=seed).describe())
    return LlaraConfig.load(model_dir).query_prompt


def query_prompt_report(encoder, model_dir: Path, query_vectors, passages, query_ids, query_texts, doc_ids,
                        qrels, bm25: dict) -> dict:
    """Reporting only: the model's query prompt (chosen without labels after its training by ``llara adapt`` or
    ``llara finetune``) against the test qrels' pick between the two prompts (the queries encoded the other way
    too, no whitening)."""
    from llara_cli.core.prompts import QueryPrompt
    from llara_cli.storage.files import read_json
    from llara_cli.training.query_prompt_choice import CHOICE_FILE

    own = encoder.config.query_prompt
    other = QueryPrompt.EBAE if own is QueryPrompt.EBAR else QueryPrompt.EBAR
    encoder.model.use_query_prompt(other)
    other_vectors = encoder.encode_queries(query_texts, batch_size=16)
    encoder.model.use_query_prompt(own)
    runs = {"bm25": bm25, own.value: dense_search(query_vectors, passages, query_ids, doc_ids),
            other.value: dense_search(other_vectors, passages, query_ids, doc_ids)}
    scores = {prompt: value["ndcg10"] for prompt, value in evaluate(runs, qrels).items() if prompt != "bm25"}
    labelled_best = max(scores, key=scores.get)
    measured = read_json(model_dir / CHOICE_FILE) if (model_dir / CHOICE_FILE).is_file() else {}
    return {"label_free": own.value, "pseudo_mrr": measured.get("scores"),
            "labelled_ndcg10": scores, "labelled_best": labelled_best, "match": labelled_best == own.value}


DEFAULT_MARGIN = 0.05  # relative margin of the mined negatives to the positive's score (llara mine --relative-margin)


def pairs_finetune(corpus: Path, base: Path, out: Path, steps: int | None, seed: int = DEFAULT_SEED,
                   margin: float = DEFAULT_MARGIN) -> Path:
    from llara_cli.training.finetune import FinetuneConfig, run_finetuning
    from llara_cli.training.recipes import FINETUNE, apply_recipe, describe_choices

    if (out / "llara_config.json").is_file():
        return out
    config, choices = apply_recipe(FinetuneConfig(out_dir=out, model=str(base), pairs_from="corpus", corpus=corpus,
                                                  precision="auto", max_steps=steps, save_steps=50, overwrite=True,
                                                  relative_margin=margin or None, seed=seed),
                                   FINETUNE, explicit={"max_steps"} if steps else ())
    stage("\n".join(describe_choices(str(base), choices)))
    run_finetuning(config)
    return out


def main() -> None:
    global MODEL  # a plumbing check swaps in a tiny model
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--summarize", action="store_true",
                        help="only gather the saved full-collection runs into own_corpus_summary.{json,md}")
    parser.add_argument("--collection", default="cranfield", help="a name under ../shared/data, or a BEIR directory")
    parser.add_argument("--model", default=MODEL, help="a plumbing check may pass a tiny model directory")
    parser.add_argument("--work", type=Path, help="models, embeddings and runs (required but with --summarize)")
    parser.add_argument("--adapt-steps", type=int, default=None, help="default: the model's recipe (200)")
    parser.add_argument("--pairs-steps", type=int, default=None, help="default: one epoch of the corpus pairs")
    parser.add_argument("--max-queries", type=int, default=None,
                        help="a sub-collection: this many test queries (the first by id) ...")
    parser.add_argument("--max-docs", type=int, default=None,
                        help="... and their judged documents plus the corpus's first others up to this many "
                        "(not a BM25 pool: no system is favoured)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help="the seed of adaptation and pairs finetuning (models and embeddings are cached per seed)")
    parser.add_argument("--relative-margin", type=float, default=DEFAULT_MARGIN,
                        help="the pairs stage's negatives: dropped within this relative margin of the positive's "
                        "score (0: no margin); a margin other than 0.05 names its own pairs model")
    parser.add_argument("--supervised-steps", type=int, default=None,
                        help="also finetune the label-free pipeline's model this many steps on the collection's "
                        "train qrels (SciFact has them): the labelled stage on top (a count other than 60 names its own "
                        "model and report, -supervised<N>)")
    arguments = parser.parse_args()
    if arguments.summarize:
        summarize()
        return
    if arguments.work is None:
        parser.error("--work is required")

    from llara_cli.core.prompts import QueryPrompt
    from llara_cli.data.corpus import queries_for_search, read_corpus
    from llara_cli.data.corpus_pairs import corpus_pairs
    from llara_cli.data.qrels import read_qrels
    from llara_cli.encode.encoder import LlaraEncoder
    from llara_cli.index.whitening import apply_whitening, fit_whitening
    from llara_cli.index.whitening_choice import choose_whitening, pseudo_query_sample
    from llara_cli.runtime.precision import resolve_dtype
    from llara_cli.search.anchored_fusion import anchored_fusion
    from llara_cli.search.label_free_fusion import label_free_dense_weight

    source = Path(arguments.collection) if Path(arguments.collection).is_dir() else SHARED_DATA / arguments.collection
    if arguments.supervised_steps and not (source / "qrels" / "train.tsv").is_file():
        parser.error(f"--supervised-steps needs train qrels: {source / 'qrels' / 'train.tsv'} is missing")
    if arguments.max_queries or arguments.max_docs:
        source = sub_collection(source, arguments.work, arguments.max_queries, arguments.max_docs)
    collection_name = source.name
    MODEL = arguments.model
    work = arguments.work
    started = time.perf_counter()
    corpus = read_corpus(source)
    doc_ids, doc_texts = [d.doc_id for d in corpus], [d.text for d in corpus]
    queries = queries_for_search(source, "test")
    query_ids, query_texts = [q.query_id for q in queries], [q.text for q in queries]
    qrels = read_qrels(source, "test")
    bm25 = bm25_run(source, queries, work / "runs" / f"{collection_name}-test-bm25.trec", k=100)
    pseudo = corpus_pairs(source, seed=0).examples
    pseudo_texts, pseudo_rows = pseudo_query_sample(source, doc_ids, count=PSEUDO_QUERIES, seed=0)
    pseudo_ids = [doc_ids[row] for row in pseudo_rows]
    from llara_cli.data.records import Query

    pseudo_bm25 = bm25_run(source, [Query(doc_id, text) for doc_id, text in zip(pseudo_ids, pseudo_texts)],
                           work / "runs" / f"{collection_name}-pseudo-bm25.trec", k=100)
    cache = EmbeddingCache(work)
    dtype = resolve_dtype("auto")

    seed = arguments.seed
    seed_tag = "" if seed == DEFAULT_SEED else f"-seed{seed}"  # the default seed keeps the earlier runs' names
    adapted = adapt(source, work / "models" / f"{collection_name}-adapted{seed_tag}", arguments.adapt_steps, seed)
    margin = arguments.relative_margin
    margin_tag = "" if margin == DEFAULT_MARGIN else f"-margin{margin:g}"
    paired = pairs_finetune(source, adapted, work / "models" / f"{collection_name}-adapted-pairs{seed_tag}{margin_tag}",
                            arguments.pairs_steps, seed, margin)
    stage_times = {"adapt_and_pairs_s": round(time.perf_counter() - started)}

    models = {"raw": MODEL, "adapted": str(adapted), "adapted+pairs": str(paired)}
    # the first supervised runs' step count keeps their cache names; another names its own model and report
    steps_tag = ("" if arguments.supervised_steps in (None, FIRST_SUPERVISED_STEPS)
                 else str(arguments.supervised_steps))
    if arguments.supervised_steps:
        models["adapted+pairs+supervised"] = str(supervised_finetune(
            source, paired,
            work / "models" / f"{collection_name}-adapted-pairs-supervised{steps_tag}{seed_tag}{margin_tag}",
            arguments.supervised_steps, seed, work))
    runs: dict[str, dict] = {"bm25": bm25}
    choices: dict[str, dict] = {}
    for name, model in models.items():
        query_prompt = QueryPrompt.EBAR if name == "raw" else trained_query_prompt(Path(model), source, seed)
        encoder = LlaraEncoder.load(model, dtype=dtype)
        cached = (name if name == "raw" else
                  f"{name}{steps_tag if name.endswith('supervised') else ''}{seed_tag}"
                  f"{margin_tag if name.startswith('adapted+pairs') else ''}")
        queries_cached = cached if query_prompt is QueryPrompt.EBAR else f"{cached}-{query_prompt.value}"
        passages = cache.get(cached, f"{collection_name}-passages", doc_ids, doc_texts,
                             lambda texts, e=encoder: e.encode_passages(texts, batch_size=16))
        query_vectors = cache.get(queries_cached, f"{collection_name}-queries", query_ids, query_texts,
                                  lambda texts, e=encoder: e.encode_queries(texts, batch_size=16))
        pseudo_vectors = cache.get(queries_cached, f"{collection_name}-pseudo", pseudo_ids, pseudo_texts,
                                   lambda texts, e=encoder: e.encode_queries(texts, batch_size=16))
        runs[name] = dense_search(query_vectors, passages, query_ids, doc_ids)
        prompt_report = (None if name == "raw" else
                         query_prompt_report(encoder, Path(model), query_vectors, passages, query_ids, query_texts,
                                             doc_ids, qrels, bm25))
        dims = [dim for dim in WHITEN_CANDIDATES if dim < min(passages.shape)]
        choice = choose_whitening(passages, pseudo_vectors, pseudo_rows, candidates=dims)
        labelled = {}
        for dim in dims:  # reporting only: which dim the test qrels would have picked
            transform = fit_whitening(passages, dim)
            labelled[dim] = dense_search(apply_whitening(transform, query_vectors), apply_whitening(transform, passages),
                                         query_ids, doc_ids)
        if choice.dim is not None:
            transform = fit_whitening(passages, choice.dim)
            white_passages, white_pseudo = apply_whitening(transform, passages), apply_whitening(transform, pseudo_vectors)
            runs[f"{name}, whiten auto"] = labelled[choice.dim]
        else:
            white_passages, white_pseudo = passages, pseudo_vectors
            runs[f"{name}, whiten auto"] = runs[name]
        scores = evaluate({"bm25": bm25, "none": runs[name], **{str(dim): run for dim, run in labelled.items()}}, qrels)
        labelled_best = max(["none", *map(str, dims)], key=lambda key: scores[key]["ndcg10"])
        label_free_run = runs[f"{name}, whiten auto"]
        pseudo_dense = dense_search(white_pseudo, white_passages, pseudo_ids, doc_ids)
        weight = label_free_dense_weight(pseudo_bm25, pseudo_dense, dict(zip(pseudo_ids, pseudo_ids)))
        runs[f"{name}, whiten auto + robust fusion"] = anchored_fusion([bm25, label_free_run], ROBUST_WEIGHT)
        runs[f"{name}, whiten auto + pseudo-tuned fusion"] = anchored_fusion([bm25, label_free_run], weight.dense_weight)
        choices[name] = {"whitening": {"label_free": choice.dim, "scores": choice.scores,
                                       "anisotropy": round(choice.anisotropy, 3), "labelled_best": labelled_best,
                                       "labelled_ndcg10": {key: scores[key]["ndcg10"] for key in scores if key != "bm25"},
                                       "match": str(choice.dim or "none") == labelled_best},
                         "fusion_weight": {"label_free": weight.dense_weight, "pseudo_best": weight.best_weight},
                         "query_prompt": prompt_report}
        stage(f"{name}: {choice.describe()}; fusion weight {weight.dense_weight}")
    result = evaluate(runs, qrels)
    fused_grid = {}
    for name in models:  # reporting only: the fusion weight the test qrels would pick, on the label-free run
        label_free_run = runs[f"{name}, whiten auto"]
        grid = {w: evaluate({"bm25": bm25, "f": anchored_fusion([bm25, label_free_run], w)}, qrels)["f"]["ndcg10"]
                for w in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)}
        fused_grid[name] = grid
        best = max(grid, key=grid.get)
        choices[name]["fusion_weight"].update(labelled_best=best, labelled_grid=grid)
    bm25_score = result["bm25"]["ndcg10"]
    payload = {
        "collection": collection_name, "source": str(source), "max_queries": arguments.max_queries,
        "max_docs": arguments.max_docs, "model": MODEL, "documents": len(doc_ids), "test_queries": len(query_ids),
        "pseudo_queries": len(pseudo_ids), "corpus_pairs": len(pseudo), "seed": seed, "relative_margin": margin,
        "dtype": dtype,
        "supervised_steps": arguments.supervised_steps,
        "adapt_steps": arguments.adapt_steps or "recipe (200)", "pairs_steps": arguments.pairs_steps or "one epoch",
        "results": result, "ratios_to_bm25": {system: round(value["ndcg10"] / bm25_score, 3)
                                               for system, value in result.items()},
        "choices": choices, "stage_times": {**stage_times, "total_s": round(time.perf_counter() - started)},
    }
    supervised_tag = f"-supervised{steps_tag}" if steps_tag else ""
    save_report(f"own_corpus_{collection_name}{seed_tag}{margin_tag}{supervised_tag}", payload, table(payload), plot)


GOALS = {"adapted": 0.5, "adapted+pairs, whiten auto": 0.7,  # issue #32 (a) and (b), as a ratio to BM25
         "adapted+pairs+supervised": 0.9}  # (b), supervised, where the collection has train qrels


STAGES = ("bm25", "raw", "adapted", "adapted+pairs", "adapted+pairs+supervised")
VARIANTS = ("", ", whiten auto", ", whiten auto + robust fusion", ", whiten auto + pseudo-tuned fusion")


def pipeline_position(system: str) -> tuple[int, int, str]:
    """Sort key of a system's name: the pipeline's stages in order, each model's variants in order (saved
    JSON has its keys sorted); an unknown name goes last."""
    for variant_index, variant in reversed(list(enumerate(VARIANTS))):
        stage_name = system.removesuffix(variant) if variant else system
        if (not variant or system.endswith(variant)) and stage_name in STAGES:
            return STAGES.index(stage_name), variant_index, system
    return len(STAGES), 0, system


def choice_matches(payloads: list[dict]) -> dict[str, dict[str, int]]:
    """How often each label-free choice (query prompt, whitening, fusion weight) equals the test qrels' best,
    over the trained models of every seed's run (the raw model chooses no query prompt)."""
    counts = {choice: {"match": 0, "of": 0} for choice in ("query_prompt", "whitening", "pseudo_tuned_fusion_weight")}
    for payload in payloads:
        for name, choice in payload["choices"].items():
            if name == "raw":
                continue
            prompt, whitening, fusion = choice.get("query_prompt"), choice["whitening"], choice["fusion_weight"]
            outcomes = {"whitening": whitening["match"],
                        "pseudo_tuned_fusion_weight": fusion["label_free"] == fusion.get("labelled_best")}
            if prompt:
                outcomes["query_prompt"] = prompt["label_free"] == prompt["labelled_best"]
            for key, matched in outcomes.items():
                counts[key]["of"] += 1
                counts[key]["match"] += int(matched)
    return counts


def summarize() -> None:
    """Every saved full-collection run (``own_corpus_<collection>[-seed<N>].json``), per collection and system:
    nDCG@10 mean and standard deviation over seeds, the ratio of the mean to BM25's, and how many seeds' runs
    are significantly above BM25 (p < 0.05)."""
    import re
    import statistics

    from benchmarks._common import RESULTS_DIR, save_result

    runs: dict[str, list[dict]] = {}
    for path in sorted(RESULTS_DIR.glob("own_corpus_*.json")):
        if path.stem == "own_corpus_summary" or not re.fullmatch(r"own_corpus_[a-z0-9]+(-seed\d+)?", path.stem):
            continue  # the summary, and ablations (margin, pairs trained on the passage prompt, sub-collections)
        payload = json.loads(path.read_text())
        if (payload.get("max_queries") or payload.get("max_docs")
                or payload.get("relative_margin", DEFAULT_MARGIN) != DEFAULT_MARGIN):
            continue  # a sub-collection run is not the collection; a margin ablation is not the pipeline
        runs.setdefault(payload["collection"], []).append(payload)
    summary: dict[str, dict] = {}
    lines = ["Own-corpus pipeline, full collections: nDCG@10 mean ± sd over seeds, × BM25 (of the means), runs "
             "significantly above BM25 (p < 0.05, paired t-test) / runs", ""]
    for collection, payloads in runs.items():
        seeds = sorted(payload.get("seed", DEFAULT_SEED) for payload in payloads)
        rows = {}
        systems = {system for payload in payloads for system in payload["results"]}  # a stage some seeds lack too
        for system in sorted(systems, key=pipeline_position):
            values = [payload["results"][system]["ndcg10"] for payload in payloads if system in payload["results"]]
            above = sum(1 for payload in payloads if system in payload["results"]
                        and (payload["results"][system]["p_vs_bm25"] or 1.0) < 0.05
                        and payload["results"][system]["ndcg10"] > payload["results"]["bm25"]["ndcg10"])
            rows[system] = {"mean": round(statistics.fmean(values), 4),
                            "sd": round(statistics.stdev(values), 4) if len(values) > 1 else None,
                            "runs": len(values), "significantly_above_bm25": above}
        bm25 = rows["bm25"]["mean"]
        for row in rows.values():
            row["ratio_to_bm25"] = round(row["mean"] / bm25, 3)
        matches = choice_matches(payloads)
        summary[collection] = {"seeds": seeds, "documents": payloads[0]["documents"],
                               "test_queries": payloads[0]["test_queries"], "systems": rows,
                               "label_free_matches_labelled_best": matches,
                               "goals": {system: {"ratio": rows[system]["ratio_to_bm25"], "goal": goal,
                                                  "met": rows[system]["ratio_to_bm25"] >= goal}
                                         for system, goal in GOALS.items() if system in rows}}
        lines += [f"**{collection}** ({payloads[0]['documents']} docs, {payloads[0]['test_queries']} test queries), "
                  f"seeds {', '.join(map(str, seeds))}", "", "| system | nDCG@10 | × BM25 | above BM25 |",
                  "|---|---:|---:|---:|"]
        for system, row in rows.items():
            spread = f" ± {row['sd']:.3f}" if row["sd"] is not None else ""
            lines.append(f"| {system} | {row['mean']:.3f}{spread} | {row['ratio_to_bm25']:.2f} | "
                         f"{row['significantly_above_bm25']}/{row['runs']} |")
        lines += ["", "Label-free choice = the test qrels' best (trained models x seeds): "
                  + ", ".join(f"{choice} {count['match']}/{count['of']}" for choice, count in matches.items()), ""]
    save_result("own_corpus_summary", {"benchmark": "own_corpus_summary", "collections": summary})
    (RESULTS_DIR / "own_corpus_summary.md").write_text("\n".join(lines))
    print("\n".join(lines))


def supervised_finetune(source: Path, base: Path, out: Path, steps: int, seed: int, work: Path) -> Path:
    """``base`` finetuned on the collection's *train* queries and qrels (BM25 hard negatives), the model's
    finetune recipe but ``steps``: the labelled stage on top of the label-free pipeline."""
    from llara_cli.training.finetune import FinetuneConfig, run_finetuning
    from llara_cli.training.recipes import FINETUNE, apply_recipe, describe_choices

    if (out / "llara_config.json").is_file():
        return out
    data, run_path = bm25_train_negatives(source, work, seed)
    config, choices = apply_recipe(FinetuneConfig(out_dir=out, model=str(base), train=source, negatives_from=run_path,
                                                  skip=TRAIN_NEGATIVE_SKIP, depth=TRAIN_NEGATIVE_DEPTH,
                                                  num_negatives=TRAIN_NEGATIVES, precision="auto",
                                                  max_steps=steps, save_steps=50, overwrite=True, seed=seed),
                                   FINETUNE, explicit={"max_steps"})
    stage("\n".join(describe_choices(str(base), choices)))
    run_finetuning(config, data=data)
    return out


def table(payload: dict) -> str:
    lines = [(f"{payload['collection']} ({payload['documents']} docs, {payload['test_queries']} test queries), "
              f"{payload['model']}, adapt steps {payload['adapt_steps']}, pairs steps {payload['pairs_steps']}, "
              f"{payload['dtype']}, seed {payload.get('seed', DEFAULT_SEED)}; nDCG@10, ratio to BM25, "
              "p vs BM25 (paired t-test)"), "",
             "| system | nDCG@10 | × BM25 | p |", "|---|---:|---:|---:|"]
    for system, value in payload["results"].items():
        p = value["p_vs_bm25"]
        lines.append(f"| {system} | {value['ndcg10']:.3f} | {payload['ratios_to_bm25'][system]:.2f} | "
                     f"{'' if p is None else f'{p:.3g}'} |")
    lines += ["", ("| model | query prompt: label-free | labelled best (ebar / ebae nDCG@10) | "
                   "whiten: label-free | labelled best | match | anisotropy | fusion w: label-free | "
                   "labelled best |"), "|---|---|---|---|---|---|---:|---:|---:|"]
    for name, choice in payload["choices"].items():
        whitening, fusion, prompt = choice["whitening"], choice["fusion_weight"], choice.get("query_prompt")
        prompt_cells = ("ebar (not chosen) | --" if not prompt else
                        f"{prompt['label_free']} | {prompt['labelled_best']} ({prompt['labelled_ndcg10']['ebar']:.3f} / "
                        f"{prompt['labelled_ndcg10']['ebae']:.3f})")
        lines.append(f"| {name} | {prompt_cells} | {whitening['label_free'] or 'none'} | {whitening['labelled_best']} | "
                     f"{'yes' if whitening['match'] else 'no'} | {whitening['anisotropy']:.2f} | "
                     f"{fusion['label_free']} | {fusion.get('labelled_best')} |")
    return "\n".join(lines) + "\n"


def plot(payload: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = list(payload["results"])
    values = [payload["results"][system]["ndcg10"] for system in systems]
    figure, axis = plt.subplots(figsize=(9, 4))
    axis.barh(range(len(systems)), values)
    axis.axvline(payload["results"]["bm25"]["ndcg10"], color="k", linestyle="--", label="BM25")
    axis.set_yticks(range(len(systems)), systems, fontsize=7)
    axis.set_xlabel("nDCG@10")
    axis.set_title(f"own corpus: {payload['collection']}")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
