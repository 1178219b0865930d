"""Token-exact fidelity to the released LLARA code (FlagEmbedding research/LLARA) with a Llama-2-style tokenizer.

The references are the step-by-step re-implementations of :mod:`tests.released_llara`; the tokenizer is built
offline (:mod:`tests.llama_tokenizer`: SentencePiece-BPE, byte fallback, dummy prefix, ``<unk> <s> </s>`` = 0 1 2).
"""
from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from llara_cli.core.prompts import (
    FLAG_MARKER_TOKENS,
    LEGACY_LAYOUT,
    TEMPLATES,
    PromptFamily,
    PromptFormat,
    PromptLayout,
    Side,
)
from llara_cli.encode.encoder import LlaraEncoder
from llara_cli.model.config import LLARA_CONFIG_FILE, LlaraConfig
from tests.conftest import build_tiny_model
from tests.llama_tokenizer import build_llama_style_tokenizer
from tests.released_llara import PREDICT_SUFFIX, SUMMARIZE_SUFFIX, pretrain_example, readme_embeddings, readme_inputs

SPACE_PIECE = "\u2581"  # SentencePiece's lone space: Llama-2 id 29871, before the markers in the released ids
RELEASED_SUFFIXES = {Side.PASSAGE: SUMMARIZE_SUFFIX, Side.QUERY: PREDICT_SUFFIX}
TEXTS = [
    "What is llama?",
    "   three leading spaces",
    "Hello, world! (yes) -- 'single' \"double\"; a/b: c... ?!",
    "na\u00efve caf\u00e9 \u2014 \u6771\u4eac \U0001f999 \u00dcber",
    "",
    " ",
    "\n\t",
    "a literal <s1> marker and <s16> too",
    "x",
]
MAX_LENGTH = 512


@pytest.fixture(scope="module")
def llama_tokenizer():
    tokenizer = build_llama_style_tokenizer()
    tokenizer.add_tokens(list(FLAG_MARKER_TOKENS), special_tokens=True)  # as BAAI's checkpoints have them
    return tokenizer


@pytest.fixture(scope="module")
def marker_model_dir(tmp_path_factory, llama_tokenizer):
    """A plain HF directory (no llara_config.json) whose tokenizer already has <s1>..<s16>, like BAAI/LLARA-*."""
    directory = tmp_path_factory.mktemp("llara-like")
    build_tiny_model(len(llama_tokenizer)).save_pretrained(directory, safe_serialization=True)
    llama_tokenizer.save_pretrained(directory)
    return directory


def flag_format(tokenizer, layout=PromptLayout.RELEASED):
    return PromptFormat.from_tokenizer(TEMPLATES[PromptFamily.FLAGEMBEDDING], tokenizer, layout)


def text_ids(tokenizer, text):
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("side", list(Side))
def test_single_sequences_equal_the_readme_inputs(llama_tokenizer, text, side):
    sequence = flag_format(llama_tokenizer).single(text_ids(llama_tokenizer, text), side, MAX_LENGTH)
    readme = readme_inputs(llama_tokenizer, [text], RELEASED_SUFFIXES[side])
    expected = readme["input_ids"][0][readme["attention_mask"][0].bool()].tolist()  # left padding removed
    assert sequence.input_ids == expected
    assert sequence.pool_positions[side] == list(range(len(expected) - 8, len(expected)))  # the snippet's [:, -8:]


@pytest.mark.parametrize("text", TEXTS)
def test_joint_sequence_and_lm_labels_equal_the_pretrain_example(llama_tokenizer, text):
    sequence = flag_format(llama_tokenizer).joint(text_ids(llama_tokenizer, text), MAX_LENGTH)
    input_ids, labels = pretrain_example(llama_tokenizer, text, MAX_LENGTH)
    assert sequence.input_ids == input_ids
    start, end = sequence.text_span
    assert [index for index, label in enumerate(labels) if label != -100] == list(range(start, end))


def test_truncated_joint_sequence_equals_the_pretrain_truncation(llama_tokenizer):
    text = " ".join(["the cell protein gene study results"] * 30)
    sequence = flag_format(llama_tokenizer).joint(text_ids(llama_tokenizer, text), 80)
    assert sequence.truncated and sequence.input_ids == pretrain_example(llama_tokenizer, text, 80)[0]


def test_suffix_pieces_end_with_the_lone_space_piece_before_the_markers(llama_tokenizer):
    prompt_format = flag_format(llama_tokenizer)
    markers = {Side.PASSAGE: list(FLAG_MARKER_TOKENS[:8]), Side.QUERY: list(FLAG_MARKER_TOKENS[8:])}
    for side in Side:
        pieces = llama_tokenizer.convert_ids_to_tokens(list(prompt_format.suffix_ids[side]))
        assert pieces[-9:] == [SPACE_PIECE, *markers[side]]  # released: ..., 29901, 29871, <markers>
        assert pieces[-10] != SPACE_PIECE


def test_stripped_layout_is_the_released_one_without_the_space_piece(llama_tokenizer):
    released, stripped = flag_format(llama_tokenizer), flag_format(llama_tokenizer, LEGACY_LAYOUT)
    for side in Side:
        assert list(stripped.suffix_ids[side]) == [*released.suffix_ids[side][:-9], *released.suffix_ids[side][-8:]]


def test_paper_layout_keeps_the_space_piece_before_eos(llama_tokenizer):
    template = TEMPLATES[PromptFamily.PAPER]
    current = PromptFormat.from_tokenizer(template, llama_tokenizer)
    legacy = PromptFormat.from_tokenizer(template, llama_tokenizer, LEGACY_LAYOUT)
    expected = text_ids(llama_tokenizer, " The original sentence: </s>")  # the paper's template, eos included
    assert list(current.suffix_ids[Side.PASSAGE]) == expected
    assert llama_tokenizer.convert_ids_to_tokens(expected[-2:]) == [SPACE_PIECE, "</s>"]
    assert list(legacy.suffix_ids[Side.PASSAGE]) == expected[:-2] + expected[-1:]


def test_plain_directory_with_markers_embeds_as_the_readme_snippet(marker_model_dir, caplog):
    from transformers import AutoModel, AutoTokenizer

    with caplog.at_level("INFO", logger="llara_cli.model.config"):
        encoder = LlaraEncoder.load(str(marker_model_dir))
    assert encoder.config.prompt_family is PromptFamily.FLAGEMBEDDING
    assert "markers" in caplog.text and "flagembedding" in caplog.text
    model = AutoModel.from_pretrained(marker_model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(marker_model_dir)
    for side in Side:
        expected = readme_embeddings(model, readme_inputs(tokenizer, TEXTS, RELEASED_SUFFIXES[side])).numpy()
        embeddings = encoder.encode(TEXTS, side, batch_size=4)
        assert np.abs(embeddings - expected).max() <= 1e-5


def test_a_model_saved_before_layouts_encodes_bit_identically(marker_model_dir, llama_tokenizer, tmp_path):
    """A llara_config.json without ``prompt_layout`` (llara before this change) keeps the stripped suffix."""
    old_dir = tmp_path / "adapted-before"
    shutil.copytree(marker_model_dir, old_dir)
    (old_dir / LLARA_CONFIG_FILE).write_text(json.dumps({  # what llara 0.1 wrote
        "prompt_family": "flagembedding", "normalize": True, "passage_max_length": 512, "query_max_length": 64,
        "base_model": "smollm2-135m", "stage": "adapted", "llara_version": "0.1.0", "pooling": "marker_mean"}))
    encoder = LlaraEncoder.load(str(old_dir))
    assert encoder.config.prompt_layout == LEGACY_LAYOUT
    # The pre-change construction, written out: the suffix tokenized with rstrip(), then the marker ids.
    old_suffixes, old_offsets = {}, {}
    for side, markers in ((Side.PASSAGE, FLAG_MARKER_TOKENS[:8]), (Side.QUERY, FLAG_MARKER_TOKENS[8:])):
        words = text_ids(llama_tokenizer, TEMPLATES[PromptFamily.FLAGEMBEDDING].suffix(side).rstrip())
        old_suffixes[side] = tuple(words + llama_tokenizer.convert_tokens_to_ids(list(markers)))
        old_offsets[side] = tuple(range(len(words), len(words) + 8))
    assert encoder.prompt_format.suffix_ids == old_suffixes and encoder.prompt_format.pool_offsets == old_offsets
    causal_lm = encoder.model.causal_lm
    reference = LlaraEncoder(causal_lm, encoder.tokenizer, encoder.config)
    reference.model.prompt_format = dataclasses.replace(encoder.prompt_format, suffix_ids=old_suffixes,
                                                        pool_offsets=old_offsets)
    current = LlaraEncoder(causal_lm, encoder.tokenizer, dataclasses.replace(encoder.config, prompt_layout=2))
    for side in Side:
        assert np.array_equal(encoder.encode(TEXTS, side), reference.encode(TEXTS, side))
        assert not np.allclose(encoder.encode(TEXTS, side), current.encode(TEXTS, side), atol=1e-4)


def test_new_configs_record_the_current_layout(tmp_path):
    LlaraConfig().save(tmp_path)
    assert json.loads((tmp_path / LLARA_CONFIG_FILE).read_text())["prompt_layout"] == 2
    assert LlaraConfig.load(tmp_path).prompt_layout == 2
