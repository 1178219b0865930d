"""Adaptation examples: sentence spans, formats, the deterministic shuffled stream and its sharding."""
from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from llara_cli.data.adaptation import (
    AdaptationExample,
    AdaptationStream,
    DataFormat,
    ExampleReader,
    buffered_shuffle,
    detect_format,
    document_examples,
    pack_spans,
    segment_bounds,
    sentence_starts,
    shard_rounds,
)
from llara_cli.errors import UsageError
from tests.conftest import WORDS, build_tiny_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def random_documents(count, seed=0):
    rng = random.Random(seed)
    documents = []
    for _ in range(count):
        sentences = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))) + " ." for _ in range(rng.randint(1, 5))]
        documents.append(" ".join(sentences))
    return documents


def write_random_corpus(directory):
    """A 30-document jsonl corpus of random sentences (also the adaptation dataset tests' corpus)."""
    return write_jsonl(directory / "corpus.jsonl",
                       [{"_id": f"d{index}", "title": "", "text": text} for index, text in enumerate(random_documents(30))])


@pytest.fixture()
def corpus(tmp_path):
    return write_random_corpus(tmp_path)


# -------------------------------------------------------------------------------------------- pure functions


def test_sentence_starts_break_after_end_punctuation_and_line_breaks():
    text = 'The cell grew. "A gene!" It was? Yes\nnew line'
    starts = sentence_starts(text)
    assert [text[start:start + 3] for start in starts] == ["The", '"A ', "It ", "Yes", "new"]
    assert sentence_starts("no break here") == [0]


def test_segment_bounds_follow_the_tokens_of_each_sentence(tokenizer):
    text = "the protein cell . a gene study ! this is the river"
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    bounds = segment_bounds([end for _, end in encoded["offset_mapping"]], sentence_starts(text))
    pieces = [tokenizer.decode(encoded["input_ids"][begin:end]) for begin, end in bounds]
    assert pieces == ["the protein cell .", "a gene study !", "this is the river"]


def test_pack_spans_fit_the_budget_and_cover_the_document():
    segments = [(0, 10), (10, 20), (20, 30), (30, 95), (95, 100)]
    spans = pack_spans(segments, 30)
    assert all(end - begin <= 30 for begin, end in spans)
    assert spans[0][0] == 0 and spans[-1][1] == 100
    assert all(left[1] == right[0] for left, right in zip(spans, spans[1:]))  # contiguous, nothing lost


def test_a_document_of_two_sentences_gives_two_spans_even_when_it_fits_in_one():
    assert pack_spans([(0, 3), (3, 6), (6, 20)], 50) == [(0, 6), (6, 20)]  # cut near the middle


def test_a_single_sentence_document_gives_one_ebae_only_example():
    spans = pack_spans([(0, 5)], 50)
    assert spans == [(0, 5)]
    assert list(document_examples([7, 8, 9, 10, 11], spans)) == [AdaptationExample([7, 8, 9, 10, 11], [])]


def test_document_examples_pair_each_span_with_the_next():
    examples = list(document_examples(list(range(6)), [(0, 2), (2, 4), (4, 6)]))
    assert examples == [([0, 1], [2, 3]), ([2, 3], [4, 5]), ([4, 5], [])]


def test_buffered_shuffle_is_a_seeded_permutation():
    items = list(range(100))
    first = list(buffered_shuffle(items, 16, random.Random(1)))
    assert sorted(first) == items and first != items
    assert first == list(buffered_shuffle(items, 16, random.Random(1)))
    assert first != list(buffered_shuffle(items, 16, random.Random(2)))


def test_shard_rounds_hands_out_whole_rounds_in_turn():
    assert list(shard_rounds(range(10), 2, 2, 0)) == [0, 1, 4, 5, 8, 9]
    assert list(shard_rounds(range(10), 2, 2, 1)) == [2, 3, 6, 7]


# -------------------------------------------------------------------------------------------- formats


def test_detect_format(tmp_path, corpus):
    released = write_jsonl(tmp_path / "pretrain.jsonl", [{"input": "a", "output_summarize": "a", "output_predict": "b"}])
    native = write_jsonl(tmp_path / "native.jsonl", [{"text": "a", "next": "b"}])
    tsv_txt = tmp_path / "collection.txt"
    tsv_txt.write_text("d1\tthe cell\n")
    plain = tmp_path / "wiki.txt"
    plain.write_text("The cell grew.\tIt was large.\n")
    (tmp_path / "beir").mkdir()
    (tmp_path / "beir" / "corpus.jsonl").write_text(corpus.read_text())
    assert detect_format(corpus) is DataFormat.CORPUS
    assert detect_format(tmp_path / "beir") is DataFormat.CORPUS
    assert detect_format(released) is DataFormat.RELEASED
    assert detect_format(native) is DataFormat.NATIVE
    assert detect_format(tsv_txt) is DataFormat.CORPUS
    assert detect_format(plain) is DataFormat.TEXT
    assert detect_format(plain, "corpus") is DataFormat.CORPUS
    with pytest.raises(UsageError, match="no such file"):
        detect_format(tmp_path / "missing.jsonl")
    with pytest.raises(UsageError, match="unknown data format"):
        detect_format(corpus, "parquet")


def test_corpus_spans_rebuild_every_document(tokenizer, corpus):
    reader = ExampleReader(corpus, tokenizer, span_tokens=12)
    examples = list(reader)
    documents = [json.loads(line)["text"] for line in corpus.read_text().splitlines()]
    # Each document ends with an EBAE-only example; joining its spans gives back its tokens.
    rebuilt, current = [], []
    for example in examples:
        assert 0 < len(example.text_ids) <= 12
        current += example.text_ids
        if not example.next_ids:
            rebuilt.append(current)
            current = []
    assert rebuilt == [tokenizer(text, add_special_tokens=False)["input_ids"] for text in documents]
    assert any(example.next_ids for example in examples)


def test_plain_text_one_document_a_line(tmp_path, tokenizer):
    path = tmp_path / "wiki.txt"
    path.write_text("the cell grew . it was large .\n\nriver city\n")
    examples = list(ExampleReader(path, tokenizer, span_tokens=50))
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    assert examples == [(encode("the cell grew ."), encode("it was large .")), (encode("it was large ."), []),
                        (encode("river city"), [])]


def test_released_pretraining_jsonl(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "pretrain.jsonl", [
        {"input": "the protein cell", "output_summarize": "the protein cell", "output_predict": "a gene study"},
    ])
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    assert list(ExampleReader(path, tokenizer, span_tokens=2)) == [(encode("the protein"), encode("a gene"))]


def test_native_jsonl_next_is_optional_and_typed(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "native.jsonl", [{"text": "river city", "next": None}, {"text": "", "next": "x"}])
    examples = list(ExampleReader(path, tokenizer, span_tokens=8))
    assert examples == [(tokenizer("river city", add_special_tokens=False)["input_ids"], [])]  # empty text skipped
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": "river", "next": 3}])
    with pytest.raises(UsageError, match=r"bad.jsonl:1: 'next' must be a string"):
        list(ExampleReader(bad, tokenizer, span_tokens=8))


def test_the_reader_streams(tmp_path, tokenizer):
    path = tmp_path / "corpus.jsonl"
    valid = "".join(json.dumps({"_id": str(index), "text": "the cell"}) + "\n" for index in range(100))
    path.write_text(valid + "{broken\n")
    iterator = iter(ExampleReader(path, tokenizer, span_tokens=8))
    assert next(iterator).text_ids  # produced before the malformed last line is read
    with pytest.raises(UsageError, match="malformed JSON"):
        list(iterator)


# --------------------------------------------------------------------------------------------- the stream


def take(dataset, count):
    iterator = iter(dataset)
    return [next(iterator) for _ in range(count)]


def test_the_stream_is_deterministic_given_the_seed(tokenizer, corpus):
    make = lambda seed: AdaptationStream(corpus, tokenizer, span_tokens=12, seed=seed, shuffle_buffer=20)  # noqa: E731
    assert take(make(1), 60) == take(make(1), 60)
    assert take(make(1), 60) != take(make(2), 60)


def test_passes_repeat_the_capped_examples_in_a_new_order(tokenizer, corpus):
    dataset = AdaptationStream(corpus, tokenizer, span_tokens=12, seed=0, max_examples=10)
    first_pass, second_pass = take(dataset, 20)[:10], take(dataset, 20)[10:]
    key = lambda examples: Counter(tuple(example.text_ids) for example in examples)  # noqa: E731
    assert key(first_pass) == key(second_pass) == key(list(dataset.examples()))
    assert first_pass != second_pass


def test_empty_corpus_and_texts_without_tokens_are_refused(tmp_path, tokenizer):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    no_tokens = write_jsonl(tmp_path / "blank.jsonl", [{"_id": "1", "text": ""}, {"_id": "2", "text": "   "}])
    for path in (empty, no_tokens):
        dataset = AdaptationStream(path, tokenizer, span_tokens=8)
        with pytest.raises(UsageError, match="no training examples"):
            dataset.check_not_empty()
        with pytest.raises(UsageError, match="no training examples"):
            next(iter(dataset))
