"""The ``released`` objective preset against a step-by-step port of the released pretraining loss."""
from __future__ import annotations

import pytest
import torch

from llara_cli.core.prompts import FLAG_MARKER_TOKENS, PromptFamily
from llara_cli.data.adaptation import AdaptationExample
from llara_cli.data.stopwords import english_stop_words
from llara_cli.errors import UsageError
from llara_cli.model.config import LlaraConfig
from llara_cli.training.adapt import adaptation_collator, adaptation_objective
from llara_cli.training.objective_presets import PRESETS, ObjectivePreset, objective_settings
from tests.conftest import build_tiny_model
from tests.llama_tokenizer import build_llama_style_tokenizer
from tests.released_llara import (
    pretrain_batch,
    pretrain_clean,
    pretrain_example,
    pretrain_logits,
    pretrain_loss,
    pretrain_suffix_ids,
)

MAX_LENGTH = 128
TOLERANCE = 1e-5
TEXTS = [
    "The llama is a domesticated South American camelid.",
    "What is the effect of the treatment on the patient?",
    "Dense retrieval with a neural language model, and a vector index!",
    "A river and a mountain: the city of music.",
]
NEXTS = [
    "It is widely used as a meat and pack animal.",
    "The results of the study show a high risk.",
    "The search is fast on a computer network.",
    "",  # a document's last span: no EBAR targets for this example
]


@pytest.fixture(scope="module")
def setup():
    tokenizer = build_llama_style_tokenizer()
    tokenizer.add_tokens(list(FLAG_MARKER_TOKENS), special_tokens=True)
    causal_lm = build_tiny_model(len(tokenizer), seed=5)
    return tokenizer, causal_lm


def released_reference(tokenizer, causal_lm, texts, nexts, *, remove_stop_words):
    """The released data.py + modeling.py path: the EBAE targets are the input text (output_summarize repeats it)."""
    stop_words = english_stop_words() | {"!", ",", ".", "?"}
    items = []
    for text, following in zip(texts, nexts):
        input_ids, labels = pretrain_example(tokenizer, text, MAX_LENGTH)
        summarize, predict = (pretrain_clean(text, stop_words), pretrain_clean(following, stop_words)) \
            if remove_stop_words else (text, following)
        items.append((input_ids, labels, summarize, predict))
    input_ids, attention, labels, summarize_ids, predict_ids = pretrain_batch(tokenizer, items, MAX_LENGTH)
    summarize_suffix, predict_suffix = pretrain_suffix_ids(tokenizer, MAX_LENGTH)
    logits = pretrain_logits(causal_lm, input_ids, attention, len(summarize_suffix), len(predict_suffix))
    return pretrain_loss(logits, labels, summarize_ids, predict_ids, len(predict_suffix))


def llara_outputs(tokenizer, causal_lm, texts, nexts, settings):
    config = LlaraConfig(prompt_family=PromptFamily.FLAGEMBEDDING)
    objective = adaptation_objective(causal_lm, tokenizer, config, settings)
    collator = adaptation_collator(objective.prompt_format, tokenizer, settings, MAX_LENGTH)
    examples = [AdaptationExample(tokenizer(text, add_special_tokens=False)["input_ids"],
                                  tokenizer(following, add_special_tokens=False)["input_ids"] if following else [])
                for text, following in zip(texts, nexts)]
    return objective(**collator(examples))


@pytest.mark.parametrize("remove_stop_words", [True, False])
def test_released_preset_loss_equals_the_released_loss(setup, remove_stop_words):
    tokenizer, causal_lm = setup
    settings = objective_settings("released", remove_stop_words=remove_stop_words)
    with torch.no_grad():
        expected = released_reference(tokenizer, causal_lm, TEXTS, NEXTS, remove_stop_words=remove_stop_words)
        loss = llara_outputs(tokenizer, causal_lm, TEXTS, NEXTS, settings)["loss"]
    assert abs(loss.item() - expected.item()) <= TOLERANCE


def test_a_batch_without_next_spans_uses_the_passage_side_alone(setup):
    tokenizer, causal_lm = setup
    no_next = [""] * len(TEXTS)
    with torch.no_grad():
        expected = released_reference(tokenizer, causal_lm, TEXTS, no_next, remove_stop_words=True)
        released = llara_outputs(tokenizer, causal_lm, TEXTS, no_next, PRESETS[ObjectivePreset.RELEASED])
        paper = llara_outputs(tokenizer, causal_lm, TEXTS, no_next, PRESETS[ObjectivePreset.PAPER])
    assert abs(released["loss"].item() - expected.item()) <= TOLERANCE
    assert paper["ebae_loss"].item() > 1
    assert paper["loss"].item() == paper["ebae_loss"].item()  # not (ebae + 0) / 2


def test_presets_and_overrides():
    assert PRESETS[ObjectivePreset.PAPER].lm_loss_weight == 0 and PRESETS[ObjectivePreset.PAPER].bow_scale == 1
    released = PRESETS[ObjectivePreset.RELEASED]
    assert (released.lm_loss_weight, released.bow_scale, released.remove_stop_words) == (1.0, 0.1, True)
    assert objective_settings("released", lm_loss_weight=0.5, remove_stop_words=None).lm_loss_weight == 0.5
    with pytest.raises(UsageError, match="unknown --objective 'bert'"):
        objective_settings("bert")
    with pytest.raises(UsageError, match="--bow-scale must be positive"):
        objective_settings("paper", bow_scale=0)
