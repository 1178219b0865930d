"""The adaptation objective: joint pass == two passes, the joint mask, the loss trains the model."""
from __future__ import annotations

import pytest
import torch

from llara_cli.core.batching import collate_adaptation
from llara_cli.core.pooling import masked_mean_pool
from llara_cli.core.prompts import TEMPLATES, PromptFamily, PromptFormat, Side, add_marker_tokens
from llara_cli.model.config import BowLogits
from llara_cli.training.adaptation_objective import LlaraAdaptationModel
from tests.conftest import build_tiny_model, build_tiny_tokenizer

TEXTS = [
    "the protein cell gene increase risk of cancer in the study",
    "river city",
    "a model for dense retrieval of document vector with neural network training",
]
NEXT_TEXTS = ["results of the treatment", "music film history", "fast search"]


def adaptation_setup(family: PromptFamily, attn_implementation: str):
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(len(tokenizer), attn_implementation)
    add_marker_tokens(tokenizer, model, TEMPLATES[family])
    prompt_format = PromptFormat.from_tokenizer(TEMPLATES[family], tokenizer)
    encode = lambda texts: tokenizer(texts, add_special_tokens=False)["input_ids"]  # noqa: E731
    examples = list(zip(encode(TEXTS), encode(NEXT_TEXTS)))
    return tokenizer, model, prompt_format, examples


def side_embeddings(model, batch):
    wrapper = LlaraAdaptationModel(model, None, bow_logits=BowLogits.EMBEDDING)
    return {side: masked_mean_pool(hidden, mask) for side, (hidden, mask) in wrapper.side_hidden_states(batch).items()}


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize("family", list(PromptFamily))
def test_joint_pass_equals_two_separate_passes(family, padding_side, attn_implementation):
    tokenizer, model, prompt_format, examples = adaptation_setup(family, attn_implementation)
    pad = tokenizer.pad_token_id
    with torch.no_grad():
        joint = side_embeddings(model, collate_adaptation(examples, prompt_format, pad, 64, joint=True,
                                                          padding_side=padding_side))
        two_pass = side_embeddings(model, collate_adaptation(examples, prompt_format, pad, 64, joint=False,
                                                             padding_side=padding_side))
    for side in Side:
        assert (joint[side] - two_pass[side]).abs().max() < 1e-4


def test_query_suffix_output_ignores_the_passage_suffix_tokens():
    tokenizer, model, prompt_format, examples = adaptation_setup(PromptFamily.PAPER, "eager")
    batch = collate_adaptation(examples[:1], prompt_format, tokenizer.pad_token_id, 64)
    changed = {key: value.clone() for key, value in batch.items()}
    passage_suffix = changed["segment_ids"] == 2
    changed["input_ids"][passage_suffix] = tokenizer.convert_tokens_to_ids("water")
    with torch.no_grad():
        original = side_embeddings(model, batch)
        altered = side_embeddings(model, changed)
    assert torch.equal(original[Side.QUERY], altered[Side.QUERY])
    assert not torch.allclose(original[Side.PASSAGE], altered[Side.PASSAGE])


@pytest.mark.parametrize("bow_logits", list(BowLogits))
def test_adaptation_loss_backpropagates_without_new_parameters(bow_logits):
    family = PromptFamily.PAPER if bow_logits is BowLogits.EMBEDDING else PromptFamily.FLAGEMBEDDING
    tokenizer, model, prompt_format, examples = adaptation_setup(family, "sdpa")
    parameters_before = sum(parameter.numel() for parameter in model.parameters())
    wrapper = LlaraAdaptationModel(model, prompt_format, bow_logits=bow_logits,
                                   excluded_target_ids=tokenizer.all_special_ids, lm_loss_weight=0.5)
    outputs = wrapper(**collate_adaptation(examples, prompt_format, tokenizer.pad_token_id, 64))
    outputs["loss"].backward()
    assert sum(parameter.numel() for parameter in wrapper.parameters()) == parameters_before
    assert set(outputs) == {"loss", "ebae_loss", "ebar_loss", "lm_loss"}
    assert torch.isfinite(outputs["loss"])
    assert model.model.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0


def test_one_optimizer_step_lowers_the_loss_on_a_fixed_batch():
    tokenizer, model, prompt_format, examples = adaptation_setup(PromptFamily.PAPER, "sdpa")
    wrapper = LlaraAdaptationModel(model.train(), prompt_format, bow_logits=BowLogits.EMBEDDING,
                                   excluded_target_ids=tokenizer.all_special_ids)
    batch = collate_adaptation(examples, prompt_format, tokenizer.pad_token_id, 64)
    optimizer = torch.optim.AdamW(wrapper.parameters(), lr=1e-3)
    first = wrapper(**batch)["loss"]
    first.backward()
    optimizer.step()
    with torch.no_grad():
        assert wrapper(**batch)["loss"] < first
