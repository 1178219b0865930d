"""Finetuning data: training-file layouts, strict errors, deterministic hard-negative mining from a run."""
from __future__ import annotations

import json

import pytest

from llara_cli.data.finetune import (
    MiningSettings,
    Passage,
    TrainingExample,
    build_training_examples,
    collection_files,
    drop_without_negatives,
    load_training_data,
    mine_negatives,
    mine_training_data,
    positives_from_qrels,
    read_training_file,
    write_training_file,
)
from llara_cli.data.qrels import Qrel, read_qrels
from llara_cli.data.runs import group_run, read_run
from llara_cli.errors import UsageError

RUN = """\
q1 Q0 d1 1 9.0 bm25
q1 Q0 d2 2 8.0 bm25
q1 Q0 d3 3 7.0 bm25
q1 Q0 d4 4 6.0 bm25
q1 Q0 d5 5 5.0 bm25
q1 Q0 d6 6 4.0 bm25
q2 Q0 d6 1 3.0 bm25
q2 Q0 d5 2 2.0 bm25
"""
QRELS = "query-id\tcorpus-id\tscore\nq1\td2\t1\nq1\td4\t0\nq2\td6\t2\nq3\td1\t1\n"


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


@pytest.fixture()
def collection(tmp_path):
    """A BEIR directory: 6 documents, 3 queries; q3 is judged but absent from the run."""
    directory = tmp_path / "beir"
    (directory / "qrels").mkdir(parents=True)
    write_jsonl(directory / "corpus.jsonl", [{"_id": f"d{index}", "title": f"title {index}", "text": f"text {index}"}
                                             for index in range(1, 7)])
    write_jsonl(directory / "queries.jsonl", [{"_id": f"q{index}", "text": f"query {index}"} for index in range(1, 4)])
    (directory / "qrels" / "train.tsv").write_text(QRELS)
    run = tmp_path / "run.trec"
    run.write_text(RUN)
    return directory, run


# ------------------------------------------------------------------------------------------------- files


def test_released_code_layout_with_and_without_ids(tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", [
        {"query": "what is a cell", "pos": ["a cell is"], "neg": ["a river", "a king"]},
        {"query_id": 7, "query": "q", "pos": ["p"], "pos_ids": ["d1"], "neg": ["n"], "neg_ids": [3]},
        {"query": "no negatives", "pos": ["p"]},
    ])
    first, second, third = read_training_file(path)
    assert first == TrainingExample(None, "what is a cell", (Passage(None, "a cell is"),),
                                    (Passage(None, "a river"), Passage(None, "a king")))
    assert second.query_id == "7" and second.positives == (Passage("d1", "p"),)
    assert second.negatives == (Passage("3", "n"),)
    assert third.negatives == ()


def test_tevatron_layout_joins_title_and_text(tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", [{
        "query_id": "1", "query": "q",
        "positive_passages": [{"docid": "d1", "title": "Title", "text": "body"}],
        "negative_passages": [{"docid": "d2", "title": "", "text": "other"}],
    }])
    (example,) = read_training_file(path)
    assert example.positives == (Passage("d1", "Title body"),)
    assert example.negatives == (Passage("d2", "other"),)


@pytest.mark.parametrize(("record", "message"), [
    ({"query": "q", "pos": [], "neg": ["n"]}, "empty 'pos'"),
    ({"query": "q", "neg": ["n"]}, "no positives"),
    ({"pos": ["p"]}, "no query"),
    ({"query": "  ", "pos": ["p"]}, "non-empty string"),
    ({"query": "q", "pos": "p"}, "must be a list"),
    ({"query": "q", "pos": [3]}, "string or an object"),
    ({"query": "q", "pos": [{"docid": "d1"}]}, "no text"),
    ({"query": "q", "pos": ["p"], "pos_ids": ["a", "b"]}, "as long as 'pos'"),
])
def test_bad_lines_name_file_and_line(tmp_path, record, message):
    path = write_jsonl(tmp_path / "train.jsonl", [{"query": "fine", "pos": ["p"]}, record])
    with pytest.raises(UsageError, match=message) as error:
        read_training_file(path)
    assert f"{path}:2:" in str(error.value)


def test_empty_training_file_is_an_error(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("")
    with pytest.raises(UsageError, match="no training examples"):
        read_training_file(path)


def test_write_then_read_round_trip_keeps_ids(tmp_path):
    examples = [
        TrainingExample("q1", "query one", (Passage("d1", "pos"),), (Passage("d2", "neg"), Passage("d3", "neg 2"))),
        TrainingExample(None, "query two", (Passage(None, "pos"),), ()),
    ]
    path = tmp_path / "out" / "train.jsonl.gz"
    assert write_training_file(path, examples) == 2
    assert read_training_file(path) == examples


def test_drop_without_negatives_counts():
    with_negatives = TrainingExample("a", "q", (Passage(None, "p"),), (Passage(None, "n"),))
    without = TrainingExample("b", "q", (Passage(None, "p"),), ())
    assert drop_without_negatives([with_negatives, without, without]) == ([with_negatives], 2)


# ------------------------------------------------------------------------------------------------ mining


def test_positives_are_judgements_at_or_above_the_threshold():
    qrels = [Qrel("q1", "d2", 1), Qrel("q1", "d4", 0), Qrel("q2", "d6", 2)]
    assert positives_from_qrels(qrels) == {"q1": ["d2"], "q2": ["d6"]}
    assert positives_from_qrels(qrels, min_relevance=2) == {"q2": ["d6"]}


def run_of(text, tmp_path):
    path = tmp_path / "run.trec"
    path.write_text(text)
    return group_run(read_run(path))


def test_mining_skips_top_ranks_and_positives_and_stops_at_depth(tmp_path):
    run = run_of(RUN, tmp_path)
    settings = MiningSettings(skip=1, depth=5, num_negatives=10)
    mined = mine_negatives(run, {"q1": ["d2"], "q2": ["d6"], "q3": ["d1"]}, settings)
    assert mined["q1"] == ["d3", "d4", "d5"]  # d1 skipped (rank 1), d2 judged relevant, d6 beyond depth 5
    assert mined["q2"] == ["d5"]
    assert mined["q3"] == []  # not in the run


def test_mining_keeps_judged_non_relevant_documents(tmp_path):
    run = run_of(RUN, tmp_path)
    positives = positives_from_qrels([Qrel("q1", "d2", 1), Qrel("q1", "d4", 0)])
    assert "d4" in mine_negatives(run, positives, MiningSettings(skip=0, depth=10, num_negatives=10))["q1"]


def test_mining_is_deterministic_per_query_and_keeps_run_order(tmp_path):
    lines = "".join(f"q{query} Q0 d{doc} {doc} {100 - doc}.0 x\n" for query in range(5) for doc in range(1, 60))
    run = run_of(lines, tmp_path)
    positives = {f"q{query}": ["d3"] for query in range(5)}
    settings = MiningSettings(skip=2, depth=50, num_negatives=5, seed=11)
    mined = mine_negatives(run, positives, settings)
    assert mined == mine_negatives(run, positives, settings)
    assert mine_negatives(run, {"q4": ["d3"]}, settings)["q4"] == mined["q4"]  # independent of the other queries
    assert all(len(ids) == 5 and "d1" not in ids and "d2" not in ids and "d3" not in ids for ids in mined.values())
    assert all(ids == sorted(ids, key=lambda doc_id: int(doc_id[1:])) for ids in mined.values())
    assert mine_negatives(run, positives, MiningSettings(skip=2, depth=50, num_negatives=5, seed=12)) != mined


def test_a_margin_to_the_positive_drops_candidates_scored_too_close(tmp_path):
    run = run_of(RUN, tmp_path)  # q1: positive d2 at 8.0; candidates d1 9.0, d3 7.0, d4 6.0, d5 5.0, d6 4.0
    positives = {"q1": ["d2"], "q2": ["d6"], "q3": ["d1"]}
    wide = dict(skip=0, depth=10, num_negatives=10)
    counts = {}
    absolute = mine_negatives(run, positives, MiningSettings(absolute_margin=1.5, **wide), counts)
    assert absolute["q1"] == ["d4", "d5", "d6"]  # at most 8.0 - 1.5 = 6.5
    assert absolute["q2"] == []  # d5 at 2.0 > 3.0 - 1.5
    assert counts == {"dropped_by_margin": 3, "queries_without_positive_score": 0}
    relative = mine_negatives(run, positives, MiningSettings(relative_margin=0.3, **wide))
    assert relative["q1"] == ["d5", "d6"]  # at most 8.0 x 0.7 = 5.6
    both = mine_negatives(run, positives, MiningSettings(absolute_margin=2.5, relative_margin=0.2, **wide))
    assert both["q1"] == ["d5", "d6"]  # min(5.5, 6.4)
    assert mine_negatives(run, positives, MiningSettings(**wide))["q1"] == ["d1", "d3", "d4", "d5", "d6"]


def test_a_positive_the_run_missed_leaves_the_candidates_unfiltered(tmp_path):
    run = run_of(RUN, tmp_path)
    counts = {}
    mined = mine_negatives(run, {"q2": ["d9"]}, MiningSettings(skip=0, depth=10, num_negatives=10,
                                                                absolute_margin=0.0), counts)
    assert mined["q2"] == ["d6", "d5"] and counts["queries_without_positive_score"] == 1


@pytest.mark.parametrize(("settings", "message"), [
    (MiningSettings(relative_margin=1.0), "--relative-margin"),
    (MiningSettings(absolute_margin=float("nan")), "--absolute-margin"),
    (MiningSettings(skip=-1), "--skip"),
    (MiningSettings(skip=5, depth=5), "--depth"),
    (MiningSettings(num_negatives=0), "--num-negatives"),
])
def test_bad_mining_settings(settings, message):
    with pytest.raises(UsageError, match=message):
        settings.validate()


def test_ids_missing_from_their_sources_are_errors():
    queries, corpus = {"q1": "query"}, {"d1": "one", "d2": "two"}
    with pytest.raises(UsageError, match=r"1 positives \(query/doc\) are missing from the corpus \(e.g. q1/d9\)"):
        build_training_examples(queries, corpus, {"q1": ["d1", "d9"]}, {})
    with pytest.raises(UsageError, match="negatives .* q1/d7.*was the run made on this corpus"):
        build_training_examples(queries, corpus, {"q1": ["d1"]}, {"q1": ["d2", "d7"]})
    with pytest.raises(UsageError, match="judged queries are missing"):
        build_training_examples(queries, corpus, {"q5": ["d1"]}, {})


def test_mine_from_a_beir_directory_counts_queries_without_negatives(collection):
    directory, run = collection
    data = mine_training_data(collection_files(directory), run, MiningSettings(skip=0, depth=10, num_negatives=2))
    by_id = {example.query_id: example for example in data.examples}
    assert set(by_id) == {"q1", "q2", "q3"}
    assert by_id["q1"].query == "query 1"
    assert by_id["q1"].positives == (Passage("d2", "title 2 text 2"),)
    assert len(by_id["q1"].negatives) == 2 and all(passage.doc_id != "d2" for passage in by_id["q1"].negatives)
    assert by_id["q3"].negatives == ()
    assert data.stats["queries_not_in_run"] == 1 and data.stats["queries_without_negatives"] == 1


def test_load_training_data_needs_a_run_for_a_collection(collection, tmp_path):
    directory, run = collection
    with pytest.raises(UsageError, match="--negatives-from"):
        load_training_data(directory)
    training_file = write_jsonl(tmp_path / "train.jsonl", [{"query": "q", "pos": ["p"]}])
    with pytest.raises(UsageError, match="is a training file"):
        load_training_data(training_file, negatives_from=run)
    with pytest.raises(UsageError, match="--queries, --qrels and --corpus"):
        load_training_data(None, queries=directory)
    data = load_training_data(None, queries=directory / "queries.jsonl", qrels=directory / "qrels" / "train.tsv",
                              corpus=directory / "corpus.jsonl", negatives_from=run)
    assert data.stats["queries"] == 3


def test_a_run_without_any_judged_query_is_an_error(collection, tmp_path):
    directory, _ = collection
    run = tmp_path / "other.trec"
    run.write_text("x Q0 d1 1 1.0 t\n")
    with pytest.raises(UsageError, match="none of the 3 judged queries"):
        mine_training_data(collection_files(directory), run)


@pytest.mark.shared_data
def test_scifact_train_positives_are_all_in_the_corpus(shared_data, tmp_path):
    scifact = shared_data / "scifact"
    positives = positives_from_qrels(read_qrels(scifact, "train"))
    run = tmp_path / "run.trec"  # a stand-in run: every judged query ranks a few documents
    doc_ids = ["4983", "5836", "7912", "18670", "19238"]
    run.write_text("".join(f"{query_id} Q0 {doc_id} {rank} {10 - rank}.0 t\n" for query_id in positives
                           for rank, doc_id in enumerate(doc_ids, start=1)))
    data = mine_training_data(collection_files(scifact), run, MiningSettings(skip=0, depth=5, num_negatives=3))
    assert data.stats["queries"] == 809 and data.stats["positives"] == 919
    assert all(1 <= len(example.negatives) <= 3 for example in data.examples)


def test_mining_can_be_restricted_to_some_queries(collection):
    directory, run = collection
    data = mine_training_data(collection_files(directory), run, query_ids={"q2"})
    assert [example.query_id for example in data.examples] == ["q2"] and data.stats["queries_not_in_run"] == 0
    with pytest.raises(UsageError, match="selected queries"):
        mine_training_data(collection_files(directory), run, query_ids={"nope"})
