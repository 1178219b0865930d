"""The trust boundary: a model directory's own code never runs without --trust-remote-code, even when something
answers "y" on stdin; pickled weights that would run code are refused, naming the file."""
from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llara_cli.cli.app import app
from llara_cli.errors import UsageError
from llara_cli.model.resolve import load_causal_lm, load_tokenizer
from llara_cli.model.trust import custom_code_reason
from tests.conftest import REPO_ROOT

CUSTOM_CODE = '''
import pathlib
pathlib.Path({marker!r}).write_text("custom code ran")
from transformers import LlamaConfig, LlamaForCausalLM
class CustomConfig(LlamaConfig):
    model_type = "llara_custom"
class CustomModel(LlamaForCausalLM):
    config_class = CustomConfig
'''


def _custom_code_dir(tiny_model_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the tiny model whose config maps an unknown model type to a .py that leaves a marker file."""
    model_dir, marker = tmp_path / "custom-model", tmp_path / "custom-code-ran"
    shutil.copytree(tiny_model_dir, model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    config["model_type"] = "llara_custom"
    config["auto_map"] = {"AutoConfig": "custom.CustomConfig", "AutoModelForCausalLM": "custom.CustomModel"}
    (model_dir / "config.json").write_text(json.dumps(config))
    (model_dir / "custom.py").write_text(CUSTOM_CODE.format(marker=str(marker)))
    return model_dir, marker


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # the payload a poisoned weight file carries
        return (Path.write_text, (self.marker, "pickle ran"))


def test_a_custom_code_directory_is_refused_even_when_stdin_answers_yes(tiny_model_dir, tmp_path):
    model_dir, marker = _custom_code_dir(tiny_model_dir, tmp_path)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"_id": "d1", "text": "the cell"}) + "\n")
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    completed = subprocess.run(
        [sys.executable, "-m", "llara_cli", "encode", str(corpus), "--model", str(model_dir),
         "--out", str(tmp_path / "emb")],
        input="y\n" * 20, capture_output=True, text=True, env=environment, timeout=300, check=False,
    )
    assert completed.returncode == 2, completed.stderr
    assert not marker.exists()
    assert "[y/N]" not in completed.stdout + completed.stderr
    error_lines = [line for line in completed.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and str(model_dir) in error_lines[0] and "--trust-remote-code" in error_lines[0]
    assert not (tmp_path / "emb").exists()


def test_the_cli_runner_with_yes_on_stdin_runs_no_custom_code(tiny_model_dir, tmp_path):
    model_dir, marker = _custom_code_dir(tiny_model_dir, tmp_path)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"_id": "d1", "text": "the cell"}) + "\n")
    result = CliRunner().invoke(app, ["encode", str(corpus), "--model", str(model_dir), "--out", str(tmp_path / "e")],
                                input="y\n" * 20)
    assert result.exit_code == 2 and not marker.exists()
    assert "--trust-remote-code" in result.output


def test_every_loader_refuses_custom_code_without_the_flag_and_runs_it_with(tiny_model_dir, tmp_path):
    model_dir, marker = _custom_code_dir(tiny_model_dir, tmp_path)
    assert "llara_custom" in custom_code_reason(model_dir)
    with pytest.raises(UsageError, match="--trust-remote-code"):
        load_tokenizer(model_dir)
    with pytest.raises(UsageError, match="--trust-remote-code"):
        load_causal_lm(model_dir)
    assert not marker.exists()
    load_causal_lm(model_dir, trust_remote_code=True)  # the user's explicit choice
    assert marker.exists()


def test_a_known_model_type_with_an_auto_map_loads_without_running_its_code(tiny_model_dir, tmp_path):
    model_dir, marker = _custom_code_dir(tiny_model_dir, tmp_path)
    config = json.loads((model_dir / "config.json").read_text())
    config["model_type"] = "llama"  # transformers' own class suffices; the .py is never imported
    (model_dir / "config.json").write_text(json.dumps(config))
    assert custom_code_reason(model_dir) is None
    load_causal_lm(model_dir)
    assert not marker.exists()


def test_a_pickled_weight_file_that_would_run_code_is_refused_naming_the_file(tiny_model_dir, tmp_path):
    model_dir, marker = tmp_path / "pickled", tmp_path / "pickle-ran"
    shutil.copytree(tiny_model_dir, model_dir)
    (model_dir / "model.safetensors").unlink()
    (model_dir / "pytorch_model.bin").write_bytes(pickle.dumps(_RunsCode(marker)))
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"_id": "d1", "text": "the cell"}) + "\n")
    result = CliRunner().invoke(app, ["encode", str(corpus), "--model", str(model_dir), "--out", str(tmp_path / "e")])
    assert result.exit_code == 2, result.output
    assert f"{model_dir / 'pytorch_model.bin'}: refused as unsafe" in result.output
    assert "internal error" not in result.output and not marker.exists()


def test_a_pickled_adapter_that_would_run_code_is_refused_naming_the_directory(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model

    from llara_cli.model.adapters import apply_adapter

    adapter_dir, marker = tmp_path / "adapter", tmp_path / "adapter-pickle-ran"
    lora = LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"], task_type="CAUSAL_LM")
    get_peft_model(load_causal_lm(tiny_model_dir), lora).save_pretrained(adapter_dir, safe_serialization=False)
    (adapter_dir / "adapter_model.bin").write_bytes(pickle.dumps(_RunsCode(marker)))
    with pytest.raises(UsageError, match="adapter_model.bin: refused as unsafe"):
        apply_adapter(load_causal_lm(tiny_model_dir), adapter_dir, merge=True)
    assert not marker.exists()


@pytest.mark.parametrize("state_file", ["rng_state.pth", "optimizer.pt"])
def test_a_poisoned_trainer_state_is_refused_on_resume_naming_the_checkpoint(tiny_model_dir, train_file, tmp_path,
                                                                               state_file):
    from llara_cli.training import run_finetuning
    from tests.training.run_helpers import Interrupt, interrupt_at
    from tests.training.test_finetune import settings

    out, marker = tmp_path / "out", tmp_path / "trainer-pickle-ran"
    config = settings(train_file, tiny_model_dir, out)
    with pytest.raises(Interrupt):
        run_finetuning(config, on_log=interrupt_at(3))
    checkpoint = config.run_dir / "checkpoint-2"
    (checkpoint / state_file).write_bytes(pickle.dumps(_RunsCode(marker)))
    with pytest.raises(UsageError, match=rf"^{checkpoint / state_file}: refused as unsafe"):
        run_finetuning(settings(train_file, tiny_model_dir, out, resume=True))
    assert not marker.exists()
