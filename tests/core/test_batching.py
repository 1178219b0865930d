"""Collation: side batches mark exactly the pooled positions of their side; adaptation batches hold the targets."""
from __future__ import annotations

import pytest
import torch

from llara_cli.core.batching import POOL_MASK_KEYS, AdaptationCollator, collate_side
from llara_cli.core.prompts import TEMPLATES, PromptFamily, PromptFormat, Side, add_marker_tokens
from llara_cli.data.adaptation import AdaptationExample
from tests.conftest import build_tiny_tokenizer

TEXTS = ["the protein cell gene", "river city music film history"]


@pytest.mark.parametrize("side", list(Side))
@pytest.mark.parametrize("family", list(PromptFamily))
def test_side_batch_pools_the_eos_or_the_markers_of_its_own_side(family, side):
    tokenizer = build_tiny_tokenizer()
    add_marker_tokens(tokenizer, None, TEMPLATES[family])
    prompt_format = PromptFormat.from_tokenizer(TEMPLATES[family], tokenizer)
    text_ids = tokenizer(TEXTS, add_special_tokens=False)["input_ids"]
    sequences = [prompt_format.single(ids, side, 64) for ids in text_ids]
    batch = collate_side(sequences, tokenizer.pad_token_id, side)
    assert set(batch) == {f"{side.value}_input_ids", f"{side.value}_segment_ids", POOL_MASK_KEYS[side]}
    markers = TEMPLATES[family].markers(side)
    expected_ids = tokenizer.convert_tokens_to_ids(list(markers)) if markers else [tokenizer.eos_token_id]
    for row, sequence in enumerate(sequences):
        pooled = batch[POOL_MASK_KEYS[side]][row].nonzero().flatten().tolist()
        assert pooled == sequence.pool_positions[side]
        assert batch[f"{side.value}_input_ids"][row, pooled].tolist() == expected_ids
    shorter = min(range(len(sequences)), key=lambda row: len(sequences[row].input_ids))
    assert batch[f"{side.value}_input_ids"][shorter, -1].item() == tokenizer.pad_token_id  # right-padded


@pytest.mark.parametrize("joint", [True, False])
def test_collator_builds_the_model_batch(joint):
    tokenizer = build_tiny_tokenizer()
    prompt_format = PromptFormat.from_tokenizer(TEMPLATES[PromptFamily.PAPER], tokenizer)
    collator = AdaptationCollator(prompt_format, tokenizer.pad_token_id, 32, joint=joint)
    batch = collator([AdaptationExample([5, 6, 7], [8, 9]), AdaptationExample([10], [])])
    assert ("input_ids" in batch) is joint and ("passage_input_ids" in batch) is not joint
    assert batch["passage_targets"].tolist() == [[5, 6, 7], [10, -100, -100]]
    assert batch["query_targets"].tolist() == [[8, 9], [-100, -100]]
    assert all(isinstance(value, torch.Tensor) for value in batch.values())
