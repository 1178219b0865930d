"""Issue #28: ids with control characters (ESC, other C0, DEL, C1) are refused where they are read, naming file
and line and never echoing the raw character; query ids holding '/' are ordinary ids."""
from __future__ import annotations

import json

import pytest

from llara_cli.data.corpus import read_corpus, read_queries
from llara_cli.data.finetune import build_training_examples
from llara_cli.encode.embedding_store import read_ids
from llara_cli.errors import UsageError
from tests.cli.conftest import invoke
from tests.cli.test_hardened_io import assert_one_line_error

CONTROL_IDS = ["d\x1b[2J", "d\x07", "d\x00", "d\x7f", "d\x9b31m"]


@pytest.mark.parametrize("bad_id", CONTROL_IDS)
def test_a_corpus_id_with_a_control_character_names_file_and_line(tmp_path, bad_id):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"_id": "d1", "text": "a"}) + "\n" + json.dumps({"_id": bad_id, "text": "b"}) + "\n")
    with pytest.raises(UsageError, match=rf"{corpus}:2: document id .* contains the control character U\+") as error:
        read_corpus(corpus)
    assert bad_id not in str(error.value)  # shown escaped, never raw


def test_query_and_docid_files_refuse_control_characters(tmp_path):
    topics = tmp_path / "topics.tsv"
    topics.write_text("q1\tfine\nq\x1b2\tbad\n")
    with pytest.raises(UsageError, match=rf"{topics}:2: .*control character U\+001B"):
        read_queries(topics)
    docid = tmp_path / "docid"
    docid.write_text("d1\nd\x1b2\n")
    with pytest.raises(UsageError, match=rf"{docid}:2: .*control character U\+001B"):
        read_ids(docid)


def test_the_cli_prints_a_control_character_id_escaped(tiny_model_dir, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"_id": "d\x1b[31mred", "text": "b"}) + "\n")
    result = invoke("encode", corpus, "--model", tiny_model_dir, "--out", tmp_path / "emb")
    assert_one_line_error(result, f"{corpus}:1:", "U+001B")
    assert "\x1b[31m" not in result.stderr and not (tmp_path / "emb").exists()


def test_query_ids_holding_a_slash_keep_their_positives():
    examples = build_training_examples({"topic/1": "a question"}, {"d/1": "a passage", "d2": "another"},
                                       {"topic/1": ["d/1"]}, {"topic/1": ["d2"]})
    assert [(example.query_id, [passage.doc_id for passage in example.positives]) for example in examples] == [
        ("topic/1", ["d/1"])]


def test_a_training_line_with_a_control_character_id_names_its_line(tmp_path):
    from llara_cli.data.finetune import read_training_file

    train = tmp_path / "train.jsonl"
    train.write_text(json.dumps({"query_id": "q1", "query": "a", "pos": ["b"]}) + "\n"
                     + json.dumps({"query_id": "q\x1b2", "query": "a", "pos": ["b"]}) + "\n")
    with pytest.raises(UsageError, match=rf"{train}:2: query id 'q\\x1b2' contains the control character U\+001B"):
        list(read_training_file(train))
