"""The label-free query prompt choice of ``llara adapt``: sampled from the corpus, measured as search embeds, recorded."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest

from llara_cli.core.prompts import QueryPrompt, Side
from llara_cli.data.adaptation import DataFormat
from llara_cli.encode.encoder import LlaraEncoder
from llara_cli.index.whitening_choice import self_retrieval_mrr
from llara_cli.model.config import LlaraConfig, Stage
from llara_cli.model.llara_model import LlaraModel
from llara_cli.training.query_prompt_choice import (
    CHOICE_FILE,
    MIN_GAIN,
    choose_query_prompt,
    record_query_prompt,
    sample_corpus,
)
from tests.conftest import WORDS


def write_titled_corpus(path, documents: int, seed: int = 0):
    rng = random.Random(seed)
    records = [{"_id": f"d{index}", "title": " ".join(rng.choice(WORDS) for _ in range(4)),
                "text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 40)))} for index in range(documents)]
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path, records


@pytest.fixture
def adapted_dir(tiny_model_dir, tmp_path):
    model = LlaraModel.load(str(tiny_model_dir), prompt_family="flagembedding")
    model.save(tmp_path / "adapted", LlaraConfig(prompt_family=model.config.prompt_family, stage=Stage.ADAPTED,
                                                  passage_max_length=48, query_max_length=24))
    return tmp_path / "adapted"


def test_the_sample_keeps_a_small_corpus_whole_and_points_each_title_at_its_own_passage(tmp_path):
    corpus, records = write_titled_corpus(tmp_path / "corpus.jsonl", 12)
    sample = sample_corpus(corpus, DataFormat.CORPUS, documents=50, queries=5)
    assert sorted(sample.passages) == sorted(f"{r['title']} {r['text']}" for r in records)
    assert len(sample.queries) == 5
    for query, row in zip(sample.queries, sample.positive_rows, strict=True):
        assert sample.passages[row].startswith(query + " ")  # the title pseudo-query of that very document


def test_the_sample_of_a_large_corpus_is_bounded_deterministic_and_spread(tmp_path):
    corpus, records = write_titled_corpus(tmp_path / "corpus.jsonl", 300)
    first = sample_corpus(corpus, DataFormat.CORPUS, documents=20, queries=10, seed=3)
    assert len(first.passages) == 20 and len(first.queries) == 10
    assert first == sample_corpus(corpus, DataFormat.CORPUS, documents=20, queries=10, seed=3)
    rows = {f"{r['title']} {r['text']}": index for index, r in enumerate(records)}
    assert max(rows[passage] for passage in first.passages) >= 100  # a reservoir, not the corpus's head


def test_plain_text_lines_are_documents_with_crop_pseudo_queries(tmp_path):
    rng = random.Random(1)
    path = tmp_path / "wiki.txt"
    path.write_text("".join(" ".join(rng.choice(WORDS) for _ in range(30)) + "\n\n" for _ in range(6)))
    sample = sample_corpus(path, DataFormat.TEXT, queries=6)
    assert len(sample.passages) == 6 and len(sample.queries) == 6
    for query, row in zip(sample.queries, sample.positive_rows, strict=True):
        assert query in sample.passages[row]


def test_both_prompts_are_measured_as_search_embeds_queries_and_the_rule_picks(adapted_dir, tmp_path):
    corpus, _ = write_titled_corpus(tmp_path / "corpus.jsonl", 40)
    choice = choose_query_prompt(adapted_dir, corpus, DataFormat.CORPUS, dtype="fp32")
    sample = sample_corpus(corpus, DataFormat.CORPUS)
    encoder = LlaraEncoder.load(str(adapted_dir))
    passages = encoder.encode_passages(sample.passages)
    ebar = encoder.encode_queries(sample.queries)
    ebae = encoder.encode(sample.queries, Side.PASSAGE, max_length=encoder.max_length(Side.QUERY))
    assert choice.scores == pytest.approx({"ebar": self_retrieval_mrr(ebar, passages, sample.positive_rows),
                                           "ebae": self_retrieval_mrr(ebae, passages, sample.positive_rows)},
                                          abs=1e-4)
    assert not np.allclose(ebar, ebae)
    expected = QueryPrompt.EBAE if choice.scores["ebae"] >= choice.scores["ebar"] + MIN_GAIN else QueryPrompt.EBAR
    assert choice.query_prompt is expected
    assert (choice.pseudo_queries, choice.passages) == (40, 40)


def test_the_choice_is_written_into_the_model_and_search_then_embeds_that_way(adapted_dir, tmp_path):
    corpus, _ = write_titled_corpus(tmp_path / "corpus.jsonl", 20)
    before = LlaraConfig.load(adapted_dir)
    choice = record_query_prompt(adapted_dir, "auto", corpus, DataFormat.CORPUS)
    after = LlaraConfig.load(adapted_dir)
    assert after.query_prompt is choice.query_prompt
    assert after == before.__class__(**{**before.__dict__, "query_prompt": choice.query_prompt})
    assert json.loads((adapted_dir / CHOICE_FILE).read_text()) == choice.to_dict()

    forced = record_query_prompt(adapted_dir, "ebae", corpus, DataFormat.CORPUS)
    assert forced.query_prompt is QueryPrompt.EBAE and not forced.scores and "--query-prompt" in forced.describe()
    encoder = LlaraEncoder.load(str(adapted_dir))
    assert (encoder.encode_queries(["river city"], max_length=24)
            == encoder.encode_passages(["river city"], max_length=24)).all()


def test_released_examples_keep_the_papers_query_prompt_and_say_why(adapted_dir, tmp_path):
    path = tmp_path / "pretrain.jsonl"
    path.write_text(json.dumps({"input": "a b c", "output_summarize": "a b c", "output_predict": "d e"}) + "\n")
    choice = choose_query_prompt(adapted_dir, path, DataFormat.RELEASED)
    assert choice.query_prompt is QueryPrompt.EBAR and not choice.scores
    assert "has no documents to measure" in choice.describe()


def test_with_nothing_to_measure_on_a_model_keeps_its_base_models_prompt(adapted_dir, tmp_path):
    config = LlaraConfig.load(adapted_dir)
    config.__class__(**{**config.__dict__, "query_prompt": QueryPrompt.EBAE}).save(adapted_dir)
    path = tmp_path / "pretrain.jsonl"
    path.write_text(json.dumps({"input": "a b c", "output_summarize": "a b c", "output_predict": "d e"}) + "\n")
    assert record_query_prompt(adapted_dir, "auto", path, DataFormat.RELEASED).query_prompt is QueryPrompt.EBAE
    assert record_query_prompt(adapted_dir, "auto", None, DataFormat.CORPUS).query_prompt is QueryPrompt.EBAE
    assert LlaraConfig.load(adapted_dir).query_prompt is QueryPrompt.EBAE
