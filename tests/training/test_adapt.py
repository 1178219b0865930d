"""`run_adaptation` on the tiny model: learning, exact resume, DDP equivalence, bad inputs."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from llara_cli.encode.encoder import LlaraEncoder
from llara_cli.errors import LlaraError, UsageError
from llara_cli.model.config import LlaraConfig
from llara_cli.training import AdaptConfig, run_adaptation
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


def sentences(rng, count):
    return " ".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))) + " ." for _ in range(count))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("adapt-data") / "corpus.jsonl"
    path.write_text("".join(json.dumps({"_id": f"d{index}", "text": sentences(rng, rng.randint(1, 4))}) + "\n"
                            for index in range(40)))
    return path


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """Native jsonl where every example has a next span: the BoW means then average exactly across ranks."""
    rng = random.Random(1)
    path = tmp_path_factory.mktemp("adapt-pairs") / "pairs.jsonl"
    path.write_text("".join(json.dumps({"text": sentences(rng, 1), "next": sentences(rng, 1)}) + "\n"
                            for _ in range(16)))
    return path


def settings(corpus, model_dir, out, **overrides):
    values = dict(corpus=corpus, out_dir=out, model=str(model_dir), max_length=48, batch_size=4, max_steps=4,
                  learning_rate=1e-3, save_steps=2, seed=3)
    values.update(overrides)
    return AdaptConfig(**values)


def weights(model_dir):
    return load_file(str(Path(model_dir) / "model.safetensors"))


# ---------------------------------------------------------------------------------------------- training


def test_loss_decreases_and_the_model_is_saved_as_adapted(tiny_model_dir, corpus, tmp_path):
    out = tmp_path / "adapted"
    records = []
    config = settings(corpus, tiny_model_dir, out, max_examples=4, max_steps=8, learning_rate=3e-3, warmup_ratio=0,
                      save_steps=100)
    result = run_adaptation(config, on_log=records.append)
    losses = [record["loss"] for record in records if record["event"] == "step"]
    assert len(losses) == 8 and losses[-1] < losses[0]
    assert records[0]["event"] == "plan" and records[0]["lines"][0].startswith("memory: estimated peak")
    first_step = next(record for record in records if record["event"] == "step")
    assert {"ebae_loss", "ebar_loss", "tokens_per_s", "learning_rate", "grad_norm"} <= set(first_step)
    assert result.steps == 8 and result.out_dir == out
    assert not config.run_dir.exists()  # the run directory goes once the model is complete
    assert LlaraConfig.load(out).stage == "adapted"
    assert [record["event"] for record in log_records(out / TRAIN_LOG_FILE)] == ["start"] + ["step"] * 8 + ["end"]
    encoder = LlaraEncoder.load(str(out))
    assert encoder.encode_passages(["the protein cell"]).shape == (1, 64)


def test_resume_after_an_interrupt_ends_with_the_uninterrupted_weights(tiny_model_dir, corpus, tmp_path):
    uninterrupted = tmp_path / "uninterrupted"
    run_adaptation(settings(corpus, tiny_model_dir, uninterrupted))

    out = tmp_path / "resumed"
    config = settings(corpus, tiny_model_dir, out)
    with pytest.raises(Interrupt):
        run_adaptation(config, on_log=interrupt_at(3))
    assert not out.exists()  # no partial model
    assert (config.run_dir / "checkpoint-2" / CHECKPOINT_MARKER).is_file()

    with pytest.raises(UsageError, match="--resume"):
        run_adaptation(config)  # checkpoints exist: resuming must be asked for
    with pytest.raises(UsageError, match="learning_rate"):
        run_adaptation(settings(corpus, tiny_model_dir, out, learning_rate=2e-3, resume=True))

    result = run_adaptation(settings(corpus, tiny_model_dir, out, resume=True))
    assert result.resumed_from_step == 2
    assert max_difference(weights(out), weights(uninterrupted)) < 1e-6
    steps = [record["step"] for record in log_records(out / TRAIN_LOG_FILE) if record["event"] == "step"]
    assert steps == [1, 2, 3, 4]  # the interrupted run's step 3 was dropped from the log


def test_a_crash_while_publishing_is_resumed_without_another_step(tiny_model_dir, pairs, tmp_path, monkeypatch):
    import llara_cli.training.adapt as adapt_module

    out = tmp_path / "out"
    config = settings(pairs, tiny_model_dir, out, max_steps=2, save_steps=2)
    crash_while_publishing(monkeypatch, adapt_module, run_adaptation, config)
    checkpoint_weights = weights(config.run_dir / "checkpoint-2")
    result = run_adaptation(settings(pairs, tiny_model_dir, out, max_steps=2, save_steps=2, resume=True))
    assert (result.steps, result.resumed_from_step) == (2, 2)
    assert max_difference(weights(out), checkpoint_weights) == 0
    assert LlaraConfig.load(out).stage == "adapted" and not config.run_dir.exists()


def test_lora_adapts_a_tied_embedding_model_whose_head_trains_added_markers(tiny_tokenizer, corpus, tmp_path):
    """SmolLM2 (the embedded model) ties its head to the embeddings: under --lora peft wraps both to train the
    added marker tokens, and the wrapped head has no ``bias`` attribute."""
    from tests.conftest import build_tiny_model

    model_dir = tmp_path / "tied"
    build_tiny_model(len(tiny_tokenizer), tied=True).save_pretrained(model_dir, safe_serialization=True)
    tiny_tokenizer.save_pretrained(model_dir)
    out = tmp_path / "lora"
    run_adaptation(settings(corpus, model_dir, out, prompt_family="flagembedding", lora=True, lora_r=4, lora_alpha=8,
                            max_steps=2, objective="released"))
    assert LlaraConfig.load(out).stage == "adapted"
    assert LlaraEncoder.load(str(out)).encode_passages(["river city"]).shape == (1, 64)


def test_flagembedding_lora_two_pass(tiny_model_dir, corpus, tmp_path):
    out = tmp_path / "lora"
    run_adaptation(settings(corpus, tiny_model_dir, out, prompt_family="flagembedding", lora=True, joint=False,
                            lora_r=4, lora_alpha=8, max_steps=2))
    config = LlaraConfig.load(out)
    assert (config.stage, config.prompt_family.value) == ("adapted", "flagembedding")
    assert not (out / "adapter_config.json").exists()  # merged into a plain model directory
    encoder = LlaraEncoder.load(str(out))
    assert "<s16>" in encoder.tokenizer.get_vocab()
    assert encoder.encode_queries(["river city"]).shape == (1, 64)


@pytest.mark.slow
def test_two_process_step_equals_one_step_on_the_concatenated_batch(tiny_model_dir, pairs, tmp_path):
    """2 gloo processes x batch 2 == 1 process x batch 4: same examples, DDP averages the per-rank means."""
    common = ["adapt", "--corpus", str(pairs), "--model", str(tiny_model_dir), "--max-length", "48",
              "--max-steps", "1", "--optim", "sgd", "--lr", "0.5", "--warmup-ratio", "0", "--max-grad-norm", "0",
              "--seed", "3", "--precision", "fp32",  # the library default; the CLI's auto may pick bf16
              # no added marker rows (the weights compare with the initial model's); BoW losses only, a mean per
              # example (the released objective's next-token loss is a mean per token: per-rank means then differ)
              "--prompt-family", "paper", "--objective", "paper"]
    run_llara_under_torchrun([*common, "--out", str(tmp_path / "ddp"), "--batch-size", "2"])

    run_adaptation(AdaptConfig(corpus=pairs, out_dir=tmp_path / "single", model=str(tiny_model_dir), max_length=48,
                               max_steps=1, optim="sgd", learning_rate=0.5, warmup_ratio=0, max_grad_norm=0, seed=3,
                               batch_size=4, prompt_family="paper", objective="paper"))
    ddp, single, initial = weights(tmp_path / "ddp"), weights(tmp_path / "single"), weights(tiny_model_dir)
    assert max_difference(single, initial) > 1e-3  # the step moved the weights...
    assert max_difference(ddp, single) < 1e-5  # ...by the same amount in both set-ups


# ---------------------------------------------------------------------------------------------- bad input


def test_bad_inputs_fail_clearly_and_leave_nothing(tiny_model_dir, corpus, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    blank = tmp_path / "blank.jsonl"
    blank.write_text(json.dumps({"_id": "1", "text": ""}) + "\n")
    out = tmp_path / "out"
    cases = [
        (settings(empty, tiny_model_dir, out), UsageError, "no training examples"),
        (settings(blank, tiny_model_dir, out), UsageError, "no training examples"),
        (settings(corpus, tiny_model_dir, out, max_length=10), UsageError, "--max-length 10 is too short"),
        (settings(corpus, tiny_model_dir, out, max_input_tokens=100), UsageError, "does not fit"),
        (settings(tmp_path / "missing.jsonl", tiny_model_dir, out), UsageError, "no such file"),
        (settings(corpus, tiny_model_dir, out, batch_size=0), UsageError, "--batch-size"),
        (settings(corpus, tiny_model_dir, corpus / "out"), LlaraError, "not a directory"),
    ]
    for config, error, message in cases:
        with pytest.raises(error, match=message):
            run_adaptation(config)
        assert not config.out_dir.exists() and not config.run_dir.exists()
    existing = tmp_path / "existing"  # an empty directory is a fine output; one holding anything else is not
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="--overwrite"):
        run_adaptation(settings(corpus, tiny_model_dir, existing))
    assert (existing / "notes.txt").read_text() == "mine"


def test_absent_7b_weights_fail_fast(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    config = settings(corpus, "llama-2-7b", tmp_path / "out")
    config.model = "llama-2-7b"
    with pytest.raises(LlaraError, match="llama-2-7b.*not in the local Hugging Face cache"):
        run_adaptation(config)
    assert not config.run_dir.exists()


def test_settings_are_recorded_beside_the_model(tiny_model_dir, pairs, tmp_path):
    out = tmp_path / "out"
    run_adaptation(settings(pairs, tiny_model_dir, out, max_steps=1, keep_checkpoints=True, save_steps=1))
    saved = json.loads((out / "adapt_config.json").read_text())
    assert saved["fingerprint"]["world_size"] == 1 and saved["settings"]["max_steps"] == 1
    assert (out / "checkpoints" / "checkpoint-1" / CHECKPOINT_MARKER).is_file()
    assert torch.equal(weights(out)["model.norm.weight"], weights(out / "checkpoints" / "checkpoint-1")["model.norm.weight"])


def test_a_plain_model_is_adapted_in_the_released_codes_form_unless_told_otherwise(tiny_model_dir, pairs, tmp_path):
    run_adaptation(settings(pairs, tiny_model_dir, tmp_path / "default", max_steps=1))
    default = json.loads((tmp_path / "default" / "adapt_config.json").read_text())["fingerprint"]
    assert (default["prompt_family"], default["objective"]) == ("flagembedding", "released")
    assert LlaraConfig.load(tmp_path / "default").prompt_family.value == "flagembedding"
    run_adaptation(settings(pairs, tiny_model_dir, tmp_path / "paper", max_steps=1, prompt_family="paper",
                            objective="paper"))
    paper = json.loads((tmp_path / "paper" / "adapt_config.json").read_text())["fingerprint"]
    assert (paper["prompt_family"], paper["objective"]) == ("paper", "paper")
    # a model that has a family keeps it: adapting the paper-family model again stays paper
    run_adaptation(settings(pairs, tmp_path / "paper", tmp_path / "again", max_steps=1))
    assert LlaraConfig.load(tmp_path / "again").prompt_family.value == "paper"


def test_the_objective_is_recorded_and_a_resume_with_another_is_refused(tiny_model_dir, pairs, tmp_path):
    out = tmp_path / "released"
    config = settings(pairs, tiny_model_dir, out, objective="released")
    with pytest.raises(Interrupt):
        run_adaptation(config, on_log=interrupt_at(3))
    with pytest.raises(UsageError, match="objective"):
        run_adaptation(settings(pairs, tiny_model_dir, out, objective="paper", resume=True))
    with pytest.raises(UsageError, match="bow_scale"):
        run_adaptation(settings(pairs, tiny_model_dir, out, objective="released", bow_scale=1.0, resume=True))
    run_adaptation(settings(pairs, tiny_model_dir, out, objective="released", resume=True))
    saved = json.loads((out / "adapt_config.json").read_text())
    assert saved["settings"]["objective"] == "released"
    assert {key: saved["fingerprint"][key] for key in ("lm_loss_weight", "bow_scale", "remove_stop_words",
                                                        "exclude_special_targets", "prompt_layout")} == {
        "lm_loss_weight": 1.0, "bow_scale": 0.1, "remove_stop_words": True, "exclude_special_targets": True,
        "prompt_layout": 2}
    steps = [record for record in log_records(out / TRAIN_LOG_FILE) if record["event"] == "step"]
    assert all("lm_loss" in record for record in steps)  # the AR loss is on
    assert LlaraConfig.load(out).prompt_layout == 2
