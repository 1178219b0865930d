"""Tuned and robust (BM25-anchored) fusion: the weight is chosen on labelled queries and recorded."""
from __future__ import annotations

import json
import random

import pytest

from llara_cli.data.qrels import Qrel
from llara_cli.data.runs import write_run
from llara_cli.errors import UsageError
from llara_cli.search.anchored_fusion import (
    ROBUST_DENSE_WEIGHT,
    anchored_fusion,
    check_disjoint,
    tune_dense_weight,
)
from llara_cli.search.run_fusion import fuse_run_files, provenance_path

DOCS_PER_QUERY = 20
QUERIES = 40


def synthetic_runs(prefix: str, seed: int, dense_knows: bool):
    """BM25 ranks the one relevant document of each query 4th; the dense run ranks it 1st or scores at random."""
    rng = random.Random(seed)
    bm25, dense, qrels = {}, {}, []
    for index in range(QUERIES):
        query_id = f"{prefix}{index}"
        docs = [f"{query_id}-d{rank}" for rank in range(DOCS_PER_QUERY)]
        relevant = docs[3]
        qrels.append(Qrel(query_id, relevant, 1))
        bm25[query_id] = [(doc_id, 10.0 - 0.1 * rank) for rank, doc_id in enumerate(docs)]
        if dense_knows:
            dense[query_id] = [(doc_id, 1.0 if doc_id == relevant else rng.random() * 0.5) for doc_id in docs]
        else:
            dense[query_id] = [(doc_id, rng.random()) for doc_id in docs]
    return bm25, dense, qrels


def test_pure_noise_dense_run_gets_weight_zero_and_the_fusion_is_bm25():
    bm25, dense, qrels = synthetic_runs("train", seed=1, dense_knows=False)
    # BM25 is perfect here: the relevant document is its first one
    qrels = [Qrel(qrel.query_id, bm25[qrel.query_id][0][0], 1) for qrel in qrels]
    tuned = tune_dense_weight([bm25, dense], qrels)
    assert tuned.dense_weight == 0.0
    assert tuned.scores[0.0] == pytest.approx(1.0)
    assert tuned.tuning_queries == QUERIES
    fused = anchored_fusion([bm25, dense], tuned.dense_weight)
    assert {query_id: [doc for doc, _ in scored] for query_id, scored in fused.items()} == \
        {query_id: [doc for doc, _ in scored] for query_id, scored in bm25.items()}


def test_a_dense_run_that_finds_the_relevant_document_gets_a_positive_weight():
    bm25, dense, qrels = synthetic_runs("train", seed=2, dense_knows=True)
    tuned = tune_dense_weight([bm25, dense], qrels)
    assert tuned.dense_weight > 0.0
    assert tuned.scores[tuned.dense_weight] > tuned.scores[0.0] and tuned.p_value < 0.05


def test_a_gain_on_one_query_in_forty_is_chance_and_gives_weight_zero():
    bm25, _noise, qrels = synthetic_runs("train", seed=8, dense_knows=False)
    dense = dict(bm25)  # the dense run agrees with BM25 everywhere but on one query
    lucky = qrels[0]  # where it finds the relevant document
    dense[lucky.query_id] = [(doc_id, 1.0 if doc_id == lucky.doc_id else 0.0) for doc_id, _ in bm25[lucky.query_id]]
    tuned = tune_dense_weight([bm25, dense], qrels)
    assert tuned.best_weight > 0.0 and tuned.scores[tuned.best_weight] > tuned.scores[0.0]
    assert tuned.p_value is not None and tuned.p_value >= 0.05
    assert tuned.dense_weight == 0.0


def test_ties_go_to_the_smaller_dense_weight():
    bm25, _dense, qrels = synthetic_runs("train", seed=3, dense_knows=False)
    tuned = tune_dense_weight([bm25, bm25], qrels)  # the "dense" run is BM25 itself: every weight ties
    assert tuned.dense_weight == 0.0


def test_the_robust_weight_cannot_overturn_a_clear_bm25_winner():
    # normalised BM25: a 1.0, b 0.7 (gap 0.3 > w / (1 - w) = 0.25), c 0.0; the dense run reverses them
    bm25 = {"q": [("a", 10.0), ("b", 7.0), ("c", 0.0)]}
    dense = {"q": [("c", 1.0), ("b", 0.5), ("a", 0.0)]}
    order = [doc for doc, _ in anchored_fusion([bm25, dense], ROBUST_DENSE_WEIGHT)["q"]]
    assert order[0] == "a"
    near_tie = {"q": [("a", 10.0), ("b", 9.0), ("c", 0.0)]}  # gap 0.1 < 0.25: the dense run breaks it
    assert [doc for doc, _ in anchored_fusion([near_tie, dense], ROBUST_DENSE_WEIGHT)["q"]][0] == "b"


def test_tuning_queries_that_are_also_evaluated_are_refused():
    with pytest.raises(UsageError, match="2 tuning queries are also in the runs to fuse"):
        check_disjoint({"q1", "q2", "q3"}, {"q2", "q3", "q9"})
    check_disjoint({"q1"}, {"q2"})


def _write(tmp_path, name, results):
    path = tmp_path / name
    write_run(path, results, tag=name.split(".")[0])
    return path


def test_tuned_fusion_of_run_files_records_the_weight_and_how_it_was_chosen(tmp_path):
    train_bm25, train_dense, train_qrels = synthetic_runs("train", seed=4, dense_knows=True)
    test_bm25, test_dense, _ = synthetic_runs("test", seed=5, dense_knows=True)
    runs = [_write(tmp_path, "bm25.trec", test_bm25), _write(tmp_path, "dense.trec", test_dense)]
    tune = [_write(tmp_path, "bm25-train.trec", train_bm25), _write(tmp_path, "dense-train.trec", train_dense)]
    out = tmp_path / "fused.trec"
    fuse_run_files(runs, "tuned", out, tune_runs=tune, tune_qrels=train_qrels)
    provenance = json.loads(provenance_path(out).read_text())
    assert provenance_path(out).name == "fused.trec.json"
    assert provenance["method"] == "tuned"
    assert provenance["dense_weight"] > 0 and provenance["weights"][0] == pytest.approx(1 - provenance["dense_weight"])
    assert provenance["tuning"]["tuning_queries"] == QUERIES
    assert len(provenance["tuning"]["grid"]) == 21
    assert provenance["tuning_runs"] == [str(path) for path in tune]
    assert out.read_text().splitlines()[0].split()[-1] == "llara-tuned"


def test_tuned_fusion_refuses_tuning_on_the_evaluated_queries(tmp_path):
    bm25, dense, qrels = synthetic_runs("test", seed=6, dense_knows=True)
    runs = [_write(tmp_path, "bm25.trec", bm25), _write(tmp_path, "dense.trec", dense)]
    tune = [_write(tmp_path, "bm25-again.trec", bm25), _write(tmp_path, "dense-again.trec", dense)]
    out = tmp_path / "fused.trec"
    with pytest.raises(UsageError, match=f"{QUERIES} tuning queries are also in the runs to fuse"):
        fuse_run_files(runs, "tuned", out, tune_runs=tune, tune_qrels=qrels)
    assert not out.exists() and not provenance_path(out).exists()


def test_robust_fusion_is_the_default_provenance(tmp_path):
    bm25, dense, _ = synthetic_runs("test", seed=7, dense_knows=False)
    runs = [_write(tmp_path, "bm25.trec", bm25), _write(tmp_path, "dense.trec", dense)]
    out = tmp_path / "fused.trec"
    fuse_run_files(runs, "robust", out)
    provenance = json.loads(provenance_path(out).read_text())
    assert provenance["dense_weight"] == ROBUST_DENSE_WEIGHT
    assert provenance["chosen_by"] == "robust default (no labels)"
    with pytest.raises(UsageError, match="apply to --method tuned only"):
        fuse_run_files(runs, "robust", out, tune_runs=runs)
