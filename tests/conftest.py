"""Shared fixtures: a tiny random Llama model and an offline word-level tokenizer, built once per session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

WORDS = (
    "the a an of to in on for with and or is are was were be by as at it this that from which "
    "original next sentence summarize above passage within eight words predict following "
    "protein cell gene cancer patient study results effect treatment disease risk increase "
    "model data method system retrieval query document search index dense vector language "
    "river mountain city music film history war king queen science paper water energy light "
    "computer program network learning neural training test time year first new high low "
    "red blue green small large fast slow good bad old young human animal plant food health"
).split()
PUNCTUATION = [".", ",", ":", '"', '",', "?", "!", "(", ")", "-", "'"]
SPECIAL_TOKENS = ["<pad>", "<unk>", "<s>", "</s>"]


def build_tiny_tokenizer():
    """A Llama-like offline tokenizer: word-level, ``<s>`` prepended, pad/unk/eos set, right padding."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocabulary = {token: index for index, token in enumerate(SPECIAL_TOKENS + WORDS + PUNCTUATION)}
    for capitalised in ("The", "A", "This"):
        vocabulary[capitalised] = len(vocabulary)
    backend = Tokenizer(models.WordLevel(vocab=vocabulary, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", vocabulary["<s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        padding_side="right",
    )


def build_tiny_model(vocab_size: int, attn_implementation: str = "sdpa", seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=vocab_size, max_position_embeddings=512, pad_token_id=0, bos_token_id=2, eos_token_id=3,
        tie_word_embeddings=False,
    )
    config._attn_implementation = attn_implementation
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """A saved HF model directory (random tiny Llama + tokenizer), as a user would pass to ``--model``."""
    directory = tmp_path_factory.mktemp("tiny-llama")
    build_tiny_model(len(tiny_tokenizer)).save_pretrained(directory, safe_serialization=True)
    tiny_tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"the shared test collections are not at {SHARED_DATA} (a fresh clone without ../shared)")
    return SHARED_DATA
