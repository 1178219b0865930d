"""Training defaults that belong to the model: alias recipes, the paper recipe for 7B-class, a trained model's own."""
from __future__ import annotations

import json

import pytest

from llara_cli.model.config import LlaraConfig, Stage
from llara_cli.training.adapt import AdaptConfig
from llara_cli.training.finetune_config import FinetuneConfig
from llara_cli.training.recipes import (
    ADAPT,
    FINETUNE,
    PAPER_RECIPE,
    SMOLLM2_RECIPE,
    RecipeSource,
    apply_recipe,
    describe_choices,
    recipe_for_model,
)


def adapt_config(tmp_path, **values):
    return AdaptConfig(corpus=tmp_path / "corpus.jsonl", out_dir=tmp_path / "out", **values)


def by_name(choices):
    return {choice.name: choice for choice in choices}


def test_the_embedded_model_adapts_with_its_measured_best(tmp_path):
    config, choices = apply_recipe(adapt_config(tmp_path), ADAPT)
    assert (config.learning_rate, config.max_steps, config.max_length, config.batch_size) == (1e-4, 200, 128, 8)
    assert (config.prompt_family.value, config.objective) == ("flagembedding", "released")
    assert {choice.source for choice in choices} == {RecipeSource.ALIAS}
    lines = describe_choices(config.model, choices)
    assert "measured best" in lines[0] and any("learning_rate 0.0001 (alias registry" in line for line in lines)


def test_a_flag_wins_over_the_recipe(tmp_path):
    config, choices = apply_recipe(adapt_config(tmp_path, learning_rate=3e-5, max_steps=7), ADAPT,
                                   explicit={"learning_rate", "max_steps"})
    assert (config.learning_rate, config.max_steps, config.max_length) == (3e-5, 7, 128)
    assert by_name(choices)["learning_rate"].source is RecipeSource.FLAG
    assert by_name(choices)["max_length"].source is RecipeSource.ALIAS


def test_seven_b_models_get_the_papers_learning_rate(tmp_path):
    config, choices = apply_recipe(adapt_config(tmp_path, model="llama-2-7b"), ADAPT)
    assert (config.learning_rate, config.max_length) == (1e-5, 512)
    assert by_name(choices)["learning_rate"].source is RecipeSource.PAPER
    large = tmp_path / "large"
    large.mkdir()
    (large / "config.json").write_text(json.dumps({"hidden_size": 4096, "num_hidden_layers": 32,
                                                   "num_attention_heads": 32, "intermediate_size": 11008,
                                                   "vocab_size": 32000}))
    assert recipe_for_model(str(large))[0] is PAPER_RECIPE  # an unknown model of 6.7B parameters


def test_a_small_unknown_model_keeps_llaras_defaults(tiny_model_dir, tmp_path):
    before = adapt_config(tmp_path, model=str(tiny_model_dir))
    config, choices = apply_recipe(before, ADAPT)
    assert (config.learning_rate, config.max_steps, config.max_length) == (before.learning_rate, before.max_steps,
                                                                            before.max_length)
    assert {choice.source for choice in choices} == {RecipeSource.BUILTIN}


def test_a_trained_model_keeps_its_lengths_and_its_bases_recipe(tiny_model_dir, tmp_path):
    adapted = tmp_path / "adapted"
    adapted.mkdir()
    (adapted / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    LlaraConfig(stage=Stage.ADAPTED, base_model="smollm2-135m", passage_max_length=100).save(adapted)
    config, choices = apply_recipe(FinetuneConfig(out_dir=tmp_path / "ft", model=str(adapted)), FINETUNE)
    assert config.passage_max_length == 100 and by_name(choices)["passage_max_length"].source is RecipeSource.MODEL
    assert config.query_max_length == 64  # an adapted model was never trained on queries: the recipe's
    assert (config.learning_rate, config.group_size) == (SMOLLM2_RECIPE.finetune["learning_rate"], 2)
    assert by_name(choices)["group_size"].source is RecipeSource.ALIAS


@pytest.mark.parametrize("lora, rate", [(True, 1e-4), (False, 1e-5)])
def test_full_finetuning_keeps_its_own_learning_rate(tmp_path, lora, rate):
    config, _ = apply_recipe(FinetuneConfig(out_dir=tmp_path / "ft", lora=lora), FINETUNE)
    assert config.learning_rate == rate
