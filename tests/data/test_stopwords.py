"""The shipped stop-word list and the released target cleaning (FlagEmbedding research/LLARA pretrain/data.py)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from llara_cli.core.batching import AdaptationCollator, pad_targets
from llara_cli.core.prompts import TEMPLATES, PromptFamily, PromptFormat
from llara_cli.data.adaptation import AdaptationExample
from llara_cli.data.stopwords import STOP_WORDS_FILE, StopWordTargets, english_stop_words, remove_stop_words
from tests.conftest import REPO_ROOT
from tests.llama_tokenizer import build_llama_style_tokenizer

NLTK_ENGLISH_SIZE = 179
RELEASED_PUNCTUATION = {"!", ",", ".", "?"}  # pretrain/data.py extends the NLTK list with these


def test_the_list_ships_inside_the_package_with_nltks_english_words():
    words = english_stop_words()
    assert len(words) == NLTK_ENGLISH_SIZE + len(RELEASED_PUNCTUATION)
    assert {"the", "a", "of", "wouldn't", "ourselves"} | RELEASED_PUNCTUATION <= words
    assert "llama" not in words and not any(word.startswith("#") for word in words)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib")
def test_pyproject_installs_the_list_as_package_data():
    import tomllib

    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["llara_cli.data"]
    assert any(Path(STOP_WORDS_FILE).match(pattern) for pattern in patterns)


@pytest.mark.parametrize(("text", "cleaned"), [
    ("The llama, and a camelid!", "llama camelid"),
    ("snake_case 42 don't (stop) \u00fcber-caf\u00e9", "snake case 42 stop \u00fcber caf\u00e9"),
    ("The of a, an.", ""),
])
def test_removal_follows_the_released_cleaning(text, cleaned):
    assert remove_stop_words(text) == cleaned


def test_targets_are_retokenized_without_stop_words():
    tokenizer = build_llama_style_tokenizer()
    rows = [tokenizer("The llama is a camelid.", add_special_tokens=False)["input_ids"], [],
            tokenizer("the of a", add_special_tokens=False)["input_ids"]]
    rebuilt = StopWordTargets(tokenizer)(rows)
    assert rebuilt == [tokenizer("llama camelid", add_special_tokens=False)["input_ids"], [], []]


def test_the_collator_filters_the_targets_only():
    tokenizer = build_llama_style_tokenizer()
    prompt_format = PromptFormat.from_tokenizer(TEMPLATES[PromptFamily.PAPER], tokenizer)
    examples = [AdaptationExample(tokenizer("The cell and the gene.", add_special_tokens=False)["input_ids"],
                                  tokenizer("A study of the risk.", add_special_tokens=False)["input_ids"])]
    plain = AdaptationCollator(prompt_format, tokenizer.pad_token_id, 64)(examples)
    filtered = AdaptationCollator(prompt_format, tokenizer.pad_token_id, 64,
                                  target_filter=StopWordTargets(tokenizer))(examples)
    assert filtered["input_ids"].equal(plain["input_ids"]) and filtered["lm_labels"].equal(plain["lm_labels"])
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    assert filtered["passage_targets"].equal(pad_targets([encode("cell gene")]))
    assert filtered["query_targets"].equal(pad_targets([encode("study risk")]))
