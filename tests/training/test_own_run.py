"""Hard negatives for corpus pairs from the model's own run, and a finetuning run on corpus pairs alone."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest

from llara_cli.data.corpus_pairs import corpus_pairs
from llara_cli.data.finetune import MiningSettings
from llara_cli.model.config import LlaraConfig
from llara_cli.training.finetune import FinetuneConfig, run_finetuning
from llara_cli.training.own_run import mine_from_own_run, rank_exactly
from tests.conftest import WORDS


@pytest.fixture()
def corpus(tmp_path):
    rng = random.Random(0)
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"_id": f"d{index}", "title": " ".join(rng.choice(WORDS) for _ in range(4)),
                                        "text": " ".join(rng.choice(WORDS) for _ in range(25))}) + "\n"
                            for index in range(10)))
    return path


def test_exact_ranking_orders_by_inner_product():
    queries = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    passages = np.array([[0.2, 0.9], [0.9, 0.1], [0.5, 0.5]], dtype=np.float32)
    run = rank_exactly(queries, passages, ["a", "b", "c"], ["q1", "q2"], depth=2)
    assert [doc_id for doc_id, _ in run["q1"]] == ["b", "c"] and [doc_id for doc_id, _ in run["q2"]] == ["a", "c"]
    assert run["q1"][0][1] == pytest.approx(0.9)


def test_negatives_from_the_models_own_run_exclude_the_source_document(tiny_model_dir, corpus):
    data = corpus_pairs(corpus)
    mined = mine_from_own_run(data, str(tiny_model_dir), corpus, MiningSettings(skip=0, depth=5, num_negatives=3),
                              query_max_length=16, passage_max_length=32)
    assert len(mined.examples) == 10 and mined.stats["negatives"] == 30
    for example in mined.examples:
        ids = [negative.doc_id for negative in example.negatives]
        assert len(ids) == 3 and example.query_id not in ids and len(set(ids)) == 3


def test_an_ebae_model_mines_from_the_run_of_the_query_prompt_it_trains(tiny_model_dir, corpus, tmp_path):
    import dataclasses

    from llara_cli.core.prompts import QueryPrompt
    from llara_cli.model.llara_model import LlaraModel

    model = LlaraModel.load(str(tiny_model_dir))
    model.save(tmp_path / "ebae", dataclasses.replace(model.config, query_prompt=QueryPrompt.EBAE))
    settings = MiningSettings(skip=0, depth=5, num_negatives=3, relative_margin=0.05)
    mined = [mine_from_own_run(corpus_pairs(corpus), str(directory), corpus, settings, query_max_length=16,
                               passage_max_length=32) for directory in (tiny_model_dir, tmp_path / "ebae")]
    assert mined[0].examples == mined[1].examples and mined[0].stats == mined[1].stats


def test_finetuning_on_corpus_pairs_alone(tiny_model_dir, corpus, tmp_path):
    out = tmp_path / "ft"
    result = run_finetuning(FinetuneConfig(
        out_dir=out, pairs_from="corpus", corpus=corpus, model=str(tiny_model_dir), batch_size=2, group_size=2,
        max_steps=2, query_max_length=16, passage_max_length=24, lora_r=4, lora_alpha=8, depth=5, skip=0,
        save_steps=100))
    assert result.steps == 2 and result.examples == 10 and (out / "adapter_model.safetensors").is_file()
    fingerprint = json.loads((out / "finetune_config.json").read_text())["fingerprint"]
    assert (fingerprint["pairs_from"], fingerprint["pair_source"]) == ("corpus", "auto")
    choice = result.query_prompt  # measured on the pairs' corpus, then written into the adapter's config
    assert set(choice.scores) == {"ebar", "ebae"} and choice.passages > 0
    assert LlaraConfig.load(out).query_prompt is choice.query_prompt
