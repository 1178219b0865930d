"""The cached contrastive loss (GradCache): the same loss and parameter gradients as the unchunked one."""
from __future__ import annotations

import pytest
import torch

from llara_cli.core.prompts import Side
from llara_cli.errors import UsageError
from llara_cli.model.adapters import add_lora
from llara_cli.training.cached_contrastive import (
    CachedContrastiveModel,
    chunk_side_batch,
)
from llara_cli.training.contrastive_objective import ContrastiveModel
from llara_cli.training.finetune import FinetuneConfig
from tests.training.test_finetune import GROUP, collate, load_parts, make_examples


def trainable_gradients(model):
    return {name: parameter.grad.detach().clone() for name, parameter in model.named_parameters()
            if parameter.requires_grad and parameter.grad is not None}


def gradients_of(objective, batch, *, seed=0, scale=1.0):
    objective.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    outputs = objective(**batch)
    (outputs["loss"] * scale).backward()
    return outputs["loss"].detach(), outputs["accuracy"], trainable_gradients(objective)


def build(tiny_model_dir, tmp_path, *, lora, dropout=0.0):
    causal_lm, tokenizer, config = load_parts(tiny_model_dir)
    if lora:
        settings = FinetuneConfig(out_dir=tmp_path, lora_r=4, lora_alpha=8, lora_dropout=dropout).lora_settings
        torch.manual_seed(1)
        causal_lm = add_lora(causal_lm, tokenizer, config.prompt_family, settings, "base")
        with torch.no_grad():  # LoRA B starts at zero: make the adapters matter for the comparison
            for name, parameter in causal_lm.named_parameters():
                if "lora_B" in name:
                    parameter.normal_(0, 0.02)
    causal_lm.train()
    batch = collate((causal_lm, tokenizer, config), make_examples(count=4))
    return causal_lm, batch


def assert_same_gradients(expected, actual, atol=1e-5):
    assert expected.keys() == actual.keys() and expected
    for name, gradient in expected.items():
        assert torch.allclose(gradient, actual[name], atol=atol, rtol=1e-4), name


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
@pytest.mark.parametrize("in_batch", [True, False], ids=["in-batch", "own-group"])
def test_chunked_gradients_equal_the_unchunked_losses(tiny_model_dir, tmp_path, lora, in_batch):
    causal_lm, batch = build(tiny_model_dir, tmp_path, lora=lora)
    plain = ContrastiveModel(causal_lm, group_size=GROUP, temperature=0.05, in_batch=in_batch)
    loss, accuracy, expected = gradients_of(plain, batch)
    for chunk_size in (1, 3, 5):  # 4 queries, 12 passages: uneven last chunks too
        cached = CachedContrastiveModel(causal_lm, group_size=GROUP, temperature=0.05, in_batch=in_batch,
                                        chunk_size=chunk_size)
        cached_loss, cached_accuracy, actual = gradients_of(cached, batch)
        assert torch.allclose(loss, cached_loss, atol=1e-6)
        assert accuracy == cached_accuracy
        assert_same_gradients(expected, actual)


def test_the_loss_scale_reaches_the_gradients(tiny_model_dir, tmp_path):
    causal_lm, batch = build(tiny_model_dir, tmp_path, lora=True)
    cached = CachedContrastiveModel(causal_lm, group_size=GROUP, temperature=0.05, chunk_size=4)
    _, _, whole = gradients_of(cached, batch)
    _, _, quarter = gradients_of(cached, batch, scale=0.25)  # as the Trainer divides by --grad-accum 4
    assert_same_gradients({name: gradient * 0.25 for name, gradient in whole.items()}, quarter)


def test_dropout_masks_are_replayed_in_the_re_forward(tiny_model_dir, tmp_path):
    """With LoRA dropout, one chunk per side draws the masks in the unchunked order: equal only if replayed."""
    causal_lm, batch = build(tiny_model_dir, tmp_path, lora=True, dropout=0.3)
    plain = ContrastiveModel(causal_lm, group_size=GROUP, temperature=0.05)
    _, _, expected = gradients_of(plain, batch, seed=7)
    cached = CachedContrastiveModel(causal_lm, group_size=GROUP, temperature=0.05, chunk_size=64)
    _, _, actual = gradients_of(cached, batch, seed=7)
    assert_same_gradients(expected, actual)
    _, _, other_seed = gradients_of(plain, batch, seed=8)  # the check can fail: other masks, other gradients
    assert any(not torch.allclose(expected[name], other_seed[name], atol=1e-5) for name in expected)


def test_the_re_forward_runs_under_the_forwards_autocast(tiny_model_dir, tmp_path):
    """Under bf16 autocast the cached gradients are the bf16 ones (the Trainer's backward runs outside autocast)."""
    causal_lm, batch = build(tiny_model_dir, tmp_path, lora=True)
    plain = ContrastiveModel(causal_lm, group_size=GROUP, temperature=0.05)
    cached = CachedContrastiveModel(causal_lm, group_size=GROUP, temperature=0.05, chunk_size=5)

    def run(objective, autocast):
        objective.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            outputs = objective(**batch)
        outputs["loss"].backward()
        return torch.cat([gradient.flatten() for gradient in trainable_gradients(objective).values()])

    plain_bf16, plain_fp32, cached_bf16 = run(plain, True), run(plain, False), run(cached, True)
    assert (cached_bf16 - plain_bf16).norm() < 0.2 * (cached_bf16 - plain_fp32).norm()
    assert (cached_bf16 - plain_bf16).norm() < 0.02 * plain_bf16.norm()


def test_evaluation_and_chunks(tiny_model_dir, tmp_path):
    causal_lm, batch = build(tiny_model_dir, tmp_path, lora=False)
    chunks = chunk_side_batch(batch, Side.PASSAGE, 5)
    assert [chunk["passage_input_ids"].shape[0] for chunk in chunks] == [5, 5, 2]
    assert torch.equal(torch.cat([chunk["passage_pool_mask"] for chunk in chunks]), batch["passage_pool_mask"])
    cached = CachedContrastiveModel(causal_lm, group_size=GROUP, chunk_size=2)
    with torch.no_grad():
        assert not cached(**batch)["loss"].requires_grad
    with pytest.raises(UsageError, match="chunk-size"):
        CachedContrastiveModel(causal_lm, group_size=GROUP, chunk_size=0)


@pytest.fixture()
def train_file(tmp_path):
    from llara_cli.data.finetune import write_training_file

    path = tmp_path / "train.jsonl"
    write_training_file(path, make_examples())
    return path


def test_a_chunked_run_trains_the_same_adapter(tiny_model_dir, train_file, tmp_path):
    from llara_cli.storage.files import read_json
    from llara_cli.training.finetune import run_finetuning
    from tests.training.run_helpers import max_difference
    from tests.training.test_finetune import settings, tensors

    outputs = {}
    for chunk_size in (0, 5):
        out = tmp_path / f"chunk-{chunk_size}"
        run_finetuning(settings(train_file, tiny_model_dir, out, lora_dropout=0.0, chunk_size=chunk_size,
                                save_steps=100, max_steps=3))
        assert read_json(out / "finetune_config.json")["settings"]["chunk_size"] == chunk_size
        outputs[chunk_size] = tensors(out / "adapter_model.safetensors")
    assert max_difference(outputs[0], outputs[5]) < 1e-5
