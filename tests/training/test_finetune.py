"""Contrastive finetuning on the tiny model: batches, learning, LoRA outputs, loading, exact resume, DDP."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from llara_cli.core.batching import ContrastiveCollator
from llara_cli.core.prompts import QueryPrompt, Side
from llara_cli.data.finetune import Passage, TrainingExample
from llara_cli.encode.encoder import LlaraEncoder
from llara_cli.errors import UsageError
from llara_cli.model.adapters import adapter_base_model, add_lora
from llara_cli.model.config import LlaraConfig, Stage
from llara_cli.model.llara_model import LlaraModel
from llara_cli.training.contrastive_objective import ContrastiveDataset, ContrastiveModel
from llara_cli.training.finetune import FinetuneConfig, run_finetuning
from llara_cli.training.trainer_utils import CHECKPOINT_MARKER, TRAIN_LOG_FILE
from tests.conftest import WORDS
from tests.training.run_helpers import (
    Interrupt,
    crash_while_publishing,
    interrupt_at,
    log_records,
    max_difference,
    run_llara_under_torchrun,
)

GROUP = 3


def words(rng, count):
    return " ".join(rng.choice(WORDS) for _ in range(count))


def make_examples(count=12, negatives=4, seed=0):
    rng = random.Random(seed)
    examples = []
    for index in range(count):
        query = words(rng, 4)
        positive = Passage(f"p{index}", f"{query} {words(rng, 8)}")
        examples.append(TrainingExample(f"q{index}", query, (positive,),
                                        tuple(Passage(f"n{index}-{k}", words(rng, 10)) for k in range(negatives))))
    return examples


def settings(train, model_dir, out, **overrides):
    values = dict(out_dir=out, train=train, model=str(model_dir), batch_size=4, group_size=GROUP, max_steps=4,
                  query_max_length=16, passage_max_length=24, lora_r=4, lora_alpha=8, learning_rate=1e-3,
                  save_steps=2, seed=3, temperature=0.05)
    values.update(overrides)
    return FinetuneConfig(**values)


def load_parts(model, **options):
    """``(causal_lm, tokenizer, config)`` of a model directory, alias or adapter directory."""
    loaded = LlaraModel.load(str(model), **options)
    return loaded.causal_lm, loaded.tokenizer, loaded.config


def tensors(path):
    return load_file(str(path))


def file_digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------ data and batches


def test_dataset_groups_positive_first_deterministic_and_vary_by_epoch():
    examples = make_examples(count=4, negatives=6)
    dataset = ContrastiveDataset(examples, group_size=4, seed=1)
    query, passages = dataset[2]
    assert query == examples[2].query and len(passages) == 4
    assert passages[0] == examples[2].positives[0].text
    assert set(passages[1:]) <= {negative.text for negative in examples[2].negatives}
    assert len(set(passages[1:])) == 3  # sampled without replacement when there are enough
    assert ContrastiveDataset(examples, group_size=4, seed=1)[2] == (query, passages)
    dataset.set_epoch(1)
    assert any(dataset[index] != ContrastiveDataset(examples, 4, 1)[index] for index in range(4))


def test_dataset_repeats_negatives_when_too_few_and_refuses_none():
    examples = make_examples(count=2, negatives=2)
    _, passages = ContrastiveDataset(examples, group_size=6, seed=0)[0]
    assert len(passages) == 6 and set(passages[1:]) == {negative.text for negative in examples[0].negatives}
    without_negatives = make_examples(count=2, negatives=0)
    assert ContrastiveDataset(without_negatives, group_size=1, seed=0)[1][1] == [without_negatives[1].positives[0].text]
    with pytest.raises(UsageError, match="no negatives"):
        ContrastiveDataset(make_examples(count=2, negatives=0), group_size=2, seed=0)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    causal_lm, tokenizer, config = load_parts(tiny_model_dir)
    return causal_lm, tokenizer, config


def collate(tiny, examples, group=GROUP, query_max_length=16, passage_max_length=24):
    causal_lm, tokenizer, config = tiny
    collator = ContrastiveCollator(tokenizer, LlaraModel(causal_lm, tokenizer, config).prompt_format,
                                   query_max_length, passage_max_length)
    dataset = ContrastiveDataset(examples, group, seed=0)
    return collator([dataset[index] for index in range(len(examples))])


def test_collated_batch_shapes_and_pool_masks(tiny):
    batch = collate(tiny, make_examples(count=4))
    assert batch["query_input_ids"].shape[0] == 4 and batch["passage_input_ids"].shape[0] == 4 * GROUP
    assert batch["query_input_ids"].shape[1] <= 16 and batch["passage_input_ids"].shape[1] <= 24
    assert batch["query_pool_mask"].sum(dim=1).tolist() == [1] * 4  # paper family: the eos position
    assert batch["passage_pool_mask"].sum(dim=1).tolist() == [1] * (4 * GROUP)


def test_training_embeddings_equal_the_encoders(tiny):
    causal_lm, tokenizer, config = tiny
    examples = make_examples(count=2)
    batch = collate(tiny, examples, query_max_length=64, passage_max_length=64)
    model = ContrastiveModel(causal_lm, group_size=GROUP).eval()
    encoder = LlaraEncoder(causal_lm, tokenizer, config)
    with torch.no_grad():
        queries = model.embed(batch, Side.QUERY)
        passages = model.embed(batch, Side.PASSAGE)
    dataset = ContrastiveDataset(examples, GROUP, seed=0)
    texts = [passage for index in range(2) for passage in dataset[index][1]]
    assert torch.allclose(queries, encoder.embed_token_ids(encoder.tokenize([e.query for e in examples]), Side.QUERY,
                                                           64), atol=1e-5)
    assert torch.allclose(passages, encoder.embed_token_ids(encoder.tokenize(texts), Side.PASSAGE, 64), atol=1e-5)


def test_one_lora_step_reduces_the_loss_on_a_fixed_batch(tiny_model_dir, tmp_path):
    causal_lm, tokenizer, config = load_parts(tiny_model_dir)
    lora_settings = FinetuneConfig(out_dir=tmp_path, lora_r=8, lora_alpha=16, lora_dropout=0.0)
    torch.manual_seed(0)
    peft_model = add_lora(causal_lm, tokenizer, config.prompt_family, lora_settings.lora_settings, "base")
    batch = collate((causal_lm, tokenizer, config), make_examples(count=4))
    model = ContrastiveModel(peft_model, group_size=GROUP, temperature=0.05).train()
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=1e-2)
    before = model(**batch)
    before["loss"].backward()
    optimizer.step()
    with torch.no_grad():
        after = model(**batch)
    assert after["loss"].item() < before["loss"].item()
    assert 0.0 <= before["accuracy"].item() <= 1.0


# -------------------------------------------------------------------------------------------- whole runs


def test_lora_run_leaves_the_base_untouched_and_saves_only_the_adapter(tiny_model_dir, train_file, tmp_path):
    base_digest = file_digest(tiny_model_dir / "model.safetensors")
    out = tmp_path / "ft"
    records = []
    result = run_finetuning(settings(train_file, tiny_model_dir, out, save_steps=100), on_log=records.append)
    assert result.steps == 4 and result.adapter and result.examples == 12
    assert file_digest(tiny_model_dir / "model.safetensors") == base_digest
    names = {path.name for path in out.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "llara_config.json", "tokenizer.json",
            TRAIN_LOG_FILE, "finetune_config.json"} <= names
    assert not any(name.startswith("model") for name in names)  # no full weights
    assert adapter_base_model(out) == str(Path(tiny_model_dir).resolve())
    adapter = tensors(out / "adapter_model.safetensors")
    assert adapter and all("lora_" in key for key in adapter)
    config = LlaraConfig.load(out)
    assert config.stage == "finetuned" and config.base_model == str(tiny_model_dir)
    steps = [record for record in records if record["event"] == "step"]
    assert len(steps) == 4 and {"loss", "accuracy", "learning_rate", "tokens_per_s"} <= set(steps[0])
    assert not settings(train_file, tiny_model_dir, out).run_dir.exists()

    merged, tokenizer, loaded_config = load_parts(out)
    unmerged, _, _ = load_parts(out, merge=False)
    base, _, _ = load_parts(tiny_model_dir)
    texts = ["the protein cell gene", "river city music"]
    embeddings = {name: LlaraEncoder(model, tokenizer, loaded_config).encode_passages(texts)
                  for name, model in (("merged", merged), ("adapter", unmerged), ("base", base))}
    assert abs(embeddings["merged"] - embeddings["adapter"]).max() < 1e-5  # LoRA-merged == adapter
    assert abs(embeddings["merged"] - embeddings["base"]).max() > 1e-4  # ...and the training changed something


def test_finetuning_trains_queries_on_the_query_prompt_and_then_chooses_the_search_prompt(tiny, tiny_model_dir,
                                                                                          train_file, tmp_path):
    causal_lm, tokenizer, config = tiny
    symmetric = dataclasses.replace(config, query_prompt=QueryPrompt.EBAE)
    collator = ContrastiveCollator(tokenizer, LlaraModel(causal_lm, tokenizer, symmetric).prompt_format, 64, 64)
    example = make_examples(count=1)[0]
    batch = collator([ContrastiveDataset([example], GROUP, seed=0)[0]])
    as_query = LlaraModel(causal_lm, tokenizer, config).prompt_format.single(
        tokenizer(example.query, add_special_tokens=False)["input_ids"], Side.QUERY, 64)
    assert batch["query_input_ids"][0].tolist()[:len(as_query.input_ids)] == as_query.input_ids

    base = tmp_path / "adapted"
    LlaraModel.load(str(tiny_model_dir)).save(base, dataclasses.replace(symmetric, stage=Stage.ADAPTED))
    run_finetuning(settings(train_file, str(base), tmp_path / "kept", max_steps=1, save_steps=100, merge=True))
    assert LlaraConfig.load(tmp_path / "kept").query_prompt is QueryPrompt.EBAE  # a jsonl: no corpus to measure on
    given = run_finetuning(settings(train_file, str(base), tmp_path / "given", max_steps=1, save_steps=100,
                                    merge=True, query_prompt="ebar"))
    assert given.query_prompt.query_prompt is QueryPrompt.EBAR
    assert LlaraConfig.load(tmp_path / "given").query_prompt is QueryPrompt.EBAR


def test_merge_and_full_finetuning_write_plain_model_directories(tiny_model_dir, train_file, tmp_path):
    for name, overrides in (("merged", dict(merge=True)), ("full", dict(lora=False))):
        out = tmp_path / name
        run_finetuning(settings(train_file, tiny_model_dir, out, max_steps=1, save_steps=100, **overrides))
        assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()
        encoder = LlaraEncoder.load(str(out))
        assert encoder.config.stage == "finetuned"
        assert encoder.encode_queries(["river city"]).shape == (1, 64)


def test_flagembedding_markers_added_for_finetuning_are_saved_with_the_adapter(tiny_model_dir, train_file, tmp_path):
    out = tmp_path / "flag"
    run_finetuning(settings(train_file, tiny_model_dir, out, prompt_family="flagembedding", max_steps=2,
                            query_max_length=32, passage_max_length=40, learning_rate=1e-2, save_steps=100))
    causal_lm, tokenizer, config = load_parts(out)
    assert config.prompt_family.value == "flagembedding" and "<s16>" in tokenizer.get_vocab()
    assert causal_lm.get_input_embeddings().weight.shape[0] == len(tokenizer)
    first = LlaraEncoder(causal_lm, tokenizer, config).encode_queries(["river city"])
    causal_lm, tokenizer, config = load_parts(out)  # marker rows come from the adapter, not the resize
    assert abs(LlaraEncoder(causal_lm, tokenizer, config).encode_queries(["river city"]) - first).max() < 1e-6


def test_resume_after_an_interrupt_ends_with_the_uninterrupted_adapter(tiny_model_dir, train_file, tmp_path):
    uninterrupted = tmp_path / "uninterrupted"
    run_finetuning(settings(train_file, tiny_model_dir, uninterrupted))  # 4 steps: 3 per epoch, crosses an epoch

    out = tmp_path / "resumed"
    config = settings(train_file, tiny_model_dir, out)
    with pytest.raises(Interrupt):
        run_finetuning(config, on_log=interrupt_at(3))
    assert not out.exists()
    assert (config.run_dir / "checkpoint-2" / CHECKPOINT_MARKER).is_file()
    assert (config.run_dir / "finetune_config.json").is_file()  # named after the command, not adapt_config.json
    assert not (config.run_dir / "adapt_config.json").exists()
    with pytest.raises(UsageError, match="--resume"):
        run_finetuning(settings(train_file, tiny_model_dir, out))
    with pytest.raises(UsageError, match="temperature"):
        run_finetuning(settings(train_file, tiny_model_dir, out, temperature=0.1, resume=True))

    result = run_finetuning(settings(train_file, tiny_model_dir, out, resume=True))
    assert result.resumed_from_step == 2
    assert max_difference(tensors(out / "adapter_model.safetensors"),
                          tensors(uninterrupted / "adapter_model.safetensors")) < 1e-6
    steps = [record["step"] for record in log_records(out / TRAIN_LOG_FILE) if record["event"] == "step"]
    assert steps == [1, 2, 3, 4]


def test_a_run_directory_of_an_older_version_resumes(tiny_model_dir, train_file, tmp_path):
    """Before finetuning named its settings file after itself, a killed run left adapt_config.json."""
    out = tmp_path / "old"
    config = settings(train_file, tiny_model_dir, out)
    with pytest.raises(Interrupt):
        run_finetuning(config, on_log=interrupt_at(3))
    (config.run_dir / "finetune_config.json").rename(config.run_dir / "adapt_config.json")
    result = run_finetuning(settings(train_file, tiny_model_dir, out, resume=True))
    assert result.resumed_from_step == 2 and (out / "finetune_config.json").is_file()
    assert not (out / "adapt_config.json").exists()


def test_a_crash_while_publishing_is_resumed_without_another_step(tiny_model_dir, train_file, tmp_path, monkeypatch):
    import llara_cli.training.finetune as finetune_module

    out = tmp_path / "out"
    config = settings(train_file, tiny_model_dir, out, max_steps=2, save_steps=2)
    crash_while_publishing(monkeypatch, finetune_module, run_finetuning, config)
    checkpoint_adapter = tensors(config.run_dir / "checkpoint-2" / "adapter_model.safetensors")
    result = run_finetuning(settings(train_file, tiny_model_dir, out, max_steps=2, save_steps=2, resume=True))
    assert (result.steps, result.resumed_from_step) == (2, 2)
    assert max_difference(tensors(out / "adapter_model.safetensors"), checkpoint_adapter) == 0
    steps = [record["step"] for record in log_records(out / TRAIN_LOG_FILE) if record["event"] == "step"]
    assert steps == [1, 2] and not config.run_dir.exists()


# --------------------------------------------------------------------------------------------- bad inputs


def test_bad_inputs_fail_before_loading_weights(tiny_model_dir, train_file, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(UsageError, match="one batch"):
        run_finetuning(settings(train_file, tiny_model_dir, out, batch_size=13))
    with pytest.raises(UsageError, match="too short"):
        run_finetuning(settings(train_file, tiny_model_dir, out, query_max_length=8, prompt_family="flagembedding"))
    with pytest.raises(UsageError, match="--merge"):
        run_finetuning(settings(train_file, tiny_model_dir, out, lora=False, merge=True))
    no_negatives = tmp_path / "none.jsonl"
    no_negatives.write_text(json.dumps({"query": "q", "pos": ["p"]}) + "\n")
    with pytest.raises(UsageError, match="no training query has a hard negative"):
        run_finetuning(settings(no_negatives, tiny_model_dir, out))
    assert not out.exists() and not settings(train_file, tiny_model_dir, out).run_dir.exists()


def test_queries_without_negatives_are_skipped_and_counted(tiny_model_dir, tmp_path):
    examples = make_examples(count=8) + [TrainingExample("x", "lonely query", (Passage(None, "p"),), ())]
    path = tmp_path / "train.jsonl"
    from llara_cli.data.finetune import write_training_file

    write_training_file(path, examples)
    result = run_finetuning(settings(path, tiny_model_dir, tmp_path / "out", max_steps=1, save_steps=100))
    assert (result.examples, result.dropped_without_negatives) == (8, 1)


# ------------------------------------------------------------------------------------------- two processes


@pytest.mark.slow
def test_two_process_step_equals_one_step_on_the_concatenated_batch(tiny_model_dir, train_file, tmp_path):
    """2 gloo processes x 2 queries, negatives gathered across them == 1 process x 4 queries."""
    common = ["finetune", "--train", str(train_file), "--model", str(tiny_model_dir), "--full", "--max-steps", "1",
              "--group-size", str(GROUP), "--query-max-length", "16", "--passage-max-length", "24",
              "--temperature", "0.05", "--optim", "sgd", "--lr", "0.5", "--warmup-ratio", "0", "--max-grad-norm", "0",
              "--seed", "3",
              "--precision", "fp32"]  # the library default; the CLI's auto may pick bf16
    run_llara_under_torchrun([*common, "--out", str(tmp_path / "ddp"), "--batch-size", "2"])

    run_finetuning(FinetuneConfig(out_dir=tmp_path / "single", train=train_file, model=str(tiny_model_dir),
                                  lora=False, max_steps=1, group_size=GROUP, query_max_length=16,
                                  passage_max_length=24, temperature=0.05, learning_rate=0.5, warmup_ratio=0,
                                  max_grad_norm=0, seed=3, batch_size=4, optim="sgd"))
    ddp = tensors(tmp_path / "ddp" / "model.safetensors")
    single = tensors(tmp_path / "single" / "model.safetensors")
    initial = tensors(tiny_model_dir / "model.safetensors")
    assert max_difference(single, initial) > 1e-3
    assert max_difference(ddp, single) < 1e-5


def test_encode_loads_the_adapter_directory_transparently(tiny_model_dir, train_file, tmp_path):
    out = tmp_path / "ft"
    run_finetuning(settings(train_file, tiny_model_dir, out, max_steps=1, save_steps=100))
    merged, tokenizer, config = load_parts(out)
    expected = LlaraEncoder(merged, tokenizer, config).encode_passages(["the protein cell"])
    encoder = LlaraEncoder.load(str(out))
    assert encoder.config.stage == "finetuned"
    assert abs(encoder.encode_passages(["the protein cell"]) - expected).max() < 1e-6
