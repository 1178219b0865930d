"""Unsupervised pairs of a corpus: title -> body, Contriever crops, auto, and what is skipped."""
from __future__ import annotations

import json
import random

import pytest

from llara_cli.data.corpus_pairs import (
    MIN_CROP_WORDS,
    PairSource,
    SourceDocument,
    corpus_pairs,
    document_pair,
    iter_source_documents,
)
from llara_cli.errors import UsageError
from tests.conftest import WORDS


def words(rng, count):
    return " ".join(rng.choice(WORDS) for _ in range(count))


@pytest.fixture()
def corpus(tmp_path):
    rng = random.Random(0)
    records = [
        {"_id": "titled", "title": "river city music history", "text": words(rng, 40)},
        {"_id": "repeats", "title": "cell gene cancer study", "text": "cell gene cancer study . " + words(rng, 30)},
        {"_id": "untitled", "title": "", "text": words(rng, 60)},
        {"_id": "authors", "title": "a report on dense retrieval", "text": "Smith, J."},  # CACM-like: no body
        {"_id": "tiny", "title": "", "text": "too short"},
    ]
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def test_auto_takes_titles_where_there_is_a_body_and_crops_elsewhere(corpus):
    data = corpus_pairs(corpus, seed=1)
    by_id = {example.query_id: example for example in data.examples}
    assert set(by_id) == {"titled", "repeats", "untitled"}  # "authors" and "tiny": too little text to crop
    assert data.stats["documents_skipped"] == 2
    assert by_id["titled"].query == "river city music history"
    assert by_id["titled"].positives[0].doc_id == "titled" and not by_id["titled"].negatives
    assert not by_id["repeats"].positives[0].text.startswith("cell gene")  # the body without its repeated title
    assert (data.stats["title_pairs"], data.stats["crop_pairs"]) == (2, 1)


def test_crops_are_two_independent_spans_of_the_document(corpus):
    documents = {document.doc_id: document for document in iter_source_documents(corpus)}
    example = document_pair(documents["untitled"], PairSource.CROPS, seed=3)
    text = documents["untitled"].body
    query, positive = example.query, example.positives[0].text
    assert query in text and positive in text and query != positive
    assert len(query.split()) >= MIN_CROP_WORDS and len(positive.split()) >= MIN_CROP_WORDS
    assert document_pair(documents["untitled"], PairSource.CROPS, seed=3) == example  # deterministic
    assert document_pair(documents["untitled"], PairSource.CROPS, seed=4) != example


def test_title_only_and_max_pairs(corpus):
    titled = corpus_pairs(corpus, source="title")
    assert [example.query_id for example in titled.examples] == ["titled", "repeats"]
    assert len(corpus_pairs(corpus, max_pairs=1).examples) == 1
    assert document_pair(SourceDocument("x", "", "a b c"), PairSource.AUTO, 0) is None


def test_a_corpus_without_usable_pairs_is_one_error(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text(json.dumps({"_id": "1", "title": "", "text": "short"}) + "\n")
    with pytest.raises(UsageError, match="no document gives"):
        corpus_pairs(path)
    with pytest.raises(UsageError, match="pair source"):
        corpus_pairs(path, source="summaries")


def test_a_tsv_corpus_gives_crops(tmp_path):
    rng = random.Random(2)
    path = tmp_path / "collection.tsv"
    path.write_text("".join(f"d{index}\t{words(rng, 30)}\n" for index in range(3)))
    data = corpus_pairs(path)
    assert len(data.examples) == 3 and data.stats["crop_pairs"] == 3
