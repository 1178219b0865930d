"""The pre-flight memory plan of finetuning: the estimate's shape, the chunk it picks, refusal and warnings."""
from __future__ import annotations

import json

import pytest

from llara_cli.errors import UsageError
from llara_cli.training.adapt import AdaptConfig
from llara_cli.training.finetune_config import FinetuneConfig
from llara_cli.training.memory_plan import (
    GIB,
    available_memory_bytes,
    estimate_adapt_memory,
    estimate_finetune_memory,
    model_shape,
    not_estimated,
    plan_adapt_memory,
    plan_finetune_memory,
)

LLAMA2_7B_CONFIG = {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32,
                    "intermediate_size": 11008, "vocab_size": 32000, "tie_word_embeddings": False}
SMOLLM2_CONFIG = {"hidden_size": 576, "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
                  "intermediate_size": 1536, "vocab_size": 49152, "tie_word_embeddings": True}


@pytest.fixture()
def smollm2_shape(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(SMOLLM2_CONFIG))
    return model_shape(tmp_path)


def config(tmp_path, **values):
    values = {"batch_size": 8, "group_size": 8, "passage_max_length": 196, "precision": "bf16", **values}
    return FinetuneConfig(out_dir=tmp_path / "out", **values)


def test_the_shape_counts_the_embedded_models_parameters(smollm2_shape):
    assert 130e6 < smollm2_shape.parameters < 140e6 and smollm2_shape.layers == 30


def test_the_help_examples_batch_did_not_fit_and_a_chunk_bounds_it(tmp_path, smollm2_shape):
    whole = estimate_finetune_memory(config(tmp_path), smollm2_shape)
    assert whole.tokens_in_graph == 8 * 32 + 64 * 196 and whole.total_bytes > 16 * GIB  # measured: killed at 20 GB
    chunked = estimate_finetune_memory(config(tmp_path, chunk_size=16), smollm2_shape)
    assert chunked.tokens_in_graph == 16 * 196 and chunked.total_bytes < 8 * GIB  # measured 7.38 GiB
    checkpointed = estimate_finetune_memory(config(tmp_path, gradient_checkpointing=True), smollm2_shape)
    assert checkpointed.activation_bytes < whole.activation_bytes / 2
    full = estimate_finetune_memory(config(tmp_path, lora=False, chunk_size=16), smollm2_shape)
    assert full.training_state_bytes > 10 * chunked.training_state_bytes  # AdamW state of every weight


def test_memory_grows_with_batch_group_and_length(tmp_path, smollm2_shape):
    sizes = [estimate_finetune_memory(config(tmp_path, **values), smollm2_shape).total_bytes
             for values in ({"group_size": 2}, {"group_size": 4}, {"group_size": 4, "batch_size": 16},
                            {"group_size": 4, "batch_size": 16, "passage_max_length": 256})]
    assert sizes == sorted(sizes) and len(set(sizes)) == 4


def test_the_plan_chunks_only_when_the_batch_does_not_fit(tmp_path, smollm2_shape):
    roomy = plan_finetune_memory(config(tmp_path), smollm2_shape, available_bytes=100 * GIB)
    assert roomy.chunk_size == 0 and not roomy.notes
    tight = plan_finetune_memory(config(tmp_path), smollm2_shape, available_bytes=20 * GIB)
    assert tight.chunk_size in (16, 32) and tight.chosen
    assert tight.estimate.total_bytes <= 10 * GIB and "chosen to fit" in tight.describe()
    kept = plan_finetune_memory(config(tmp_path, chunk_size=0, memory_check=False), smollm2_shape,
                                available_bytes=20 * GIB)
    assert kept.chunk_size == 0 and kept.notes  # the user said no chunking: warned, not changed


def test_a_run_that_cannot_fit_is_refused_unless_told_otherwise(tmp_path, smollm2_shape):
    with pytest.raises(UsageError, match="--chunk-size"):
        plan_finetune_memory(config(tmp_path, chunk_size=0), smollm2_shape, available_bytes=8 * GIB)
    with pytest.raises(UsageError, match="--gradient-checkpointing"):  # even one text a pass is too much
        plan_finetune_memory(config(tmp_path), smollm2_shape, available_bytes=1 * GIB)
    warned = plan_finetune_memory(config(tmp_path, chunk_size=0, memory_check=False), smollm2_shape,
                                  available_bytes=8 * GIB)
    assert "GiB" in warned.notes[0]


def test_the_plan_leaves_several_processes_alone(tmp_path, smollm2_shape):
    plan = plan_finetune_memory(config(tmp_path, memory_check=False), smollm2_shape, available_bytes=8 * GIB,
                                distributed=True)
    assert plan.chunk_size == 0


def test_available_memory_is_positive_and_bounded():
    assert 0 < available_memory_bytes() < 64 * 1024 * GIB


def adapt_config(tmp_path, **values):
    values = {"batch_size": 8, "max_length": 128, "precision": "bf16", "objective": "released", **values}
    return AdaptConfig(corpus=tmp_path / "corpus.txt", out_dir=tmp_path / "out", **values)


def test_adaptation_memory_grows_with_batch_and_length_and_shrinks_with_lora_and_checkpointing(tmp_path,
                                                                                              smollm2_shape):
    sizes = [estimate_adapt_memory(adapt_config(tmp_path, **values), smollm2_shape)
             for values in ({}, {"max_length": 256}, {"max_length": 256, "batch_size": 16})]
    assert [size.total_bytes for size in sizes] == sorted({size.total_bytes for size in sizes})
    assert sizes[0].tokens_in_graph == 8 * 128
    full = estimate_adapt_memory(adapt_config(tmp_path), smollm2_shape)
    assert full.training_state_bytes == smollm2_shape.parameters * 12  # AdamW state for every weight
    lora = estimate_adapt_memory(adapt_config(tmp_path, lora=True), smollm2_shape)
    assert lora.training_state_bytes < full.training_state_bytes / 10
    checkpointed = estimate_adapt_memory(adapt_config(tmp_path, gradient_checkpointing=True), smollm2_shape)
    assert checkpointed.activation_bytes < full.activation_bytes
    two_passes = estimate_adapt_memory(adapt_config(tmp_path, joint=False), smollm2_shape)
    assert two_passes.tokens_in_graph == 2 * full.tokens_in_graph
    bow_only = estimate_adapt_memory(adapt_config(tmp_path, objective="paper"), smollm2_shape)
    assert bow_only.activation_bytes < full.activation_bytes  # no next-token logits


def test_a_7b_adaptation_on_a_24_gib_cpu_is_refused_with_what_would_fit(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(LLAMA2_7B_CONFIG))
    shape = model_shape(tmp_path)
    with pytest.raises(UsageError, match="--lora.*--gradient-checkpointing.*--no-memory-check"):
        plan_adapt_memory(adapt_config(tmp_path, max_length=512), shape, available_bytes=24 * GIB)
    warned = plan_adapt_memory(adapt_config(tmp_path, max_length=512, memory_check=False), shape,
                               available_bytes=24 * GIB)
    assert warned.notes and "GiB are available" in warned.notes[0]
    assert plan_adapt_memory(adapt_config(tmp_path), model_shape(tmp_path), available_bytes=1024 * GIB).notes == ()


def test_a_gpu_run_is_not_estimated():
    plan = not_estimated("training on cuda")
    assert plan.estimate is None and plan.chunk_size == 0 and plan.describe() == "memory: not estimated (training on cuda)"
