"""The input-file rows of the bad-input catalogue (docs/reliability.md): each bad file names file and line."""
from __future__ import annotations

import gzip
import json

import pytest

from llara_cli.data.corpus import read_corpus, read_queries
from llara_cli.data.qrels import read_qrels
from llara_cli.data.runs import read_run, write_run
from llara_cli.errors import UsageError


def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


@pytest.mark.parametrize("bad_line, message", [
    ('{"_id": "b", "text": ', "malformed JSON"),
    ("", "empty line"),
    ('{"text": "no id"}', "no id field"),
    ('{"_id": "c"}', "no text field"),
    ('{"_id": ["x"], "text": "list id"}', "id must be a string"),
    ('["not", "an", "object"]', "expected a JSON object"),
])
def test_bad_corpus_line_names_file_and_line(tmp_path, bad_line, message):
    path = write_lines(tmp_path / "corpus.jsonl", ['{"_id": "a", "text": "fine"}', bad_line])
    with pytest.raises(UsageError, match=rf"corpus.jsonl:2: {message}"):
        read_corpus(path)


def test_non_utf8_bytes_name_the_line(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_bytes(b'{"_id": "a", "text": "ok"}\n{"_id": "b", "text": "caf\xe9"}\n')
    with pytest.raises(UsageError, match=r"corpus.jsonl:2: not valid UTF-8"):
        read_corpus(path)


def test_duplicate_ids_are_listed(tmp_path):
    path = write_lines(tmp_path / "corpus.jsonl", [json.dumps({"_id": doc_id, "text": "t"}) for doc_id in "abab"])
    with pytest.raises(UsageError, match="duplicate document ids: a, b"):
        read_corpus(path)


def test_empty_corpus_and_empty_queries_are_errors(tmp_path):
    (tmp_path / "corpus.jsonl").write_text("")
    (tmp_path / "queries.tsv").write_text("")
    with pytest.raises(UsageError, match="corpus is empty"):
        read_corpus(tmp_path / "corpus.jsonl")
    with pytest.raises(UsageError, match="no queries"):
        read_queries(tmp_path / "queries.tsv")


def test_formats_pyserini_beir_and_topics_tsv_read_alike(tmp_path):
    pyserini = write_lines(tmp_path / "p.jsonl", [json.dumps({"id": "d1", "contents": "Title body"})])
    beir = write_lines(tmp_path / "b.jsonl", [json.dumps({"_id": "d1", "title": "Title", "text": "body"})])
    assert read_corpus(pyserini) == read_corpus(beir)
    topics = write_lines(tmp_path / "topics.tsv", ["q1\twhat is dense retrieval"])
    assert read_queries(topics)[0] == ("q1", "what is dense retrieval")


def test_gzip_inputs_work(tmp_path):
    with gzip.open(tmp_path / "corpus.jsonl.gz", "wt") as handle:
        handle.write(json.dumps({"_id": "d1", "text": "zipped"}) + "\n")
    with gzip.open(tmp_path / "qrels.tsv.gz", "wt") as handle:
        handle.write("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    assert read_corpus(tmp_path / "corpus.jsonl.gz")[0].text == "zipped"
    assert read_qrels(tmp_path / "qrels.tsv.gz")[0] == ("q1", "d1", 1)


@pytest.mark.parametrize("bad_line, message", [
    ("q1 Q0 d1 1 0.5", "expected 6 columns"),
    ("q1 Q0 d1 one 0.5 tag", "rank 'one' is not an integer"),
    ("q1 Q0 d1 1 high tag", "score 'high' is not a number"),
    ("q1 Q0 d0 2 0.4 tag", "document d0 listed twice for query q1"),
])
def test_bad_run_line_names_file_and_line(tmp_path, bad_line, message):
    path = write_lines(tmp_path / "run.trec", ["q1 Q0 d0 1 0.9 tag", bad_line])
    with pytest.raises(UsageError, match=rf"run.trec:2: {message}"):
        read_run(path)


def test_qrels_in_unknown_format_is_refused(tmp_path):
    path = write_lines(tmp_path / "qrels.txt", ["q1 d1"])
    with pytest.raises(UsageError, match="qrels.txt:1: unknown qrels format"):
        read_qrels(path)


def test_trec_and_beir_qrels_read_alike(tmp_path):
    trec = write_lines(tmp_path / "qrels.trec", ["q1 0 d1 2", "q1 0 d2 0"])
    beir = write_lines(tmp_path / "qrels.tsv", ["query-id\tcorpus-id\tscore", "q1\td1\t2", "q1\td2\t0"])
    assert read_qrels(trec) == read_qrels(beir)


def test_run_round_trip_ranks_from_one_with_deterministic_ties(tmp_path):
    results = {"q1": [("d2", 0.5), ("d1", 0.5), ("d3", 0.9)]}
    write_run(tmp_path / "run.trec", results, tag="t")
    lines = (tmp_path / "run.trec").read_text().splitlines()
    assert lines == ["q1 Q0 d3 1 0.9 t", "q1 Q0 d1 2 0.5 t", "q1 Q0 d2 3 0.5 t"]
    assert [scored.doc_id for scored in read_run(tmp_path / "run.trec")] == ["d3", "d1", "d2"]
