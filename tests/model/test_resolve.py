"""Model resolution (directories, aliases, the offline hub cache) and loading."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llara_cli.errors import LlaraError, UsageError
from llara_cli.model.resolve import (
    DTYPES,
    MODEL_ALIASES,
    is_peft_adapter_dir,
    llara_home,
    load_causal_lm,
    load_tokenizer,
    resolve_model,
    torch_dtype,
)

TINY_VOCAB = ["hello", "world", "query", "passage"]


# ---------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama (hidden 32, 2 layers) saved as safetensors, with a WordLevel tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    model_dir = tmp_path_factory.mktemp("tiny-llama")
    config = LlamaConfig(
        vocab_size=16, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
    )
    LlamaForCausalLM(config).save_pretrained(model_dir)
    _save_tokenizer(model_dir, unk="[UNK]", eos="</s>", pad="[PAD]")
    return model_dir


def _save_tokenizer(directory: Path, unk: str | None = None, eos: str | None = None, pad: str | None = None) -> Path:
    """Save a WordLevel tokenizer with only the given special tokens."""
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    specials = [token for token in (unk, eos, pad) if token is not None]
    vocab = {token: index for index, token in enumerate(specials + TINY_VOCAB)}
    backend = Tokenizer(WordLevel(vocab, unk_token=unk))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token=unk, eos_token=eos, pad_token=pad)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture()
def empty_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache, and sockets that fail loudly if anything tries the network."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return tmp_path / "hf" / "hub"


def _fake_snapshot(hub_cache: Path, repo_id: str, files: dict[str, bytes]) -> Path:
    """Lay out ``repo_id`` in a hub cache as huggingface_hub does: refs/main -> snapshots/<commit>/."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = hub_cache / f"models--{repo_id.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    snapshot = repo_dir / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name, content in files.items():
        (snapshot / name).write_bytes(content)
    return snapshot


# ------------------------------------------------------------------------------------------------- light import


def test_import_does_not_load_torch_or_transformers() -> None:
    code = (
        "import sys, llara_cli.model.resolve\n"
        "print(sorted(m for m in ('torch', 'transformers', 'huggingface_hub') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# --------------------------------------------------------------------------------------------------- resolution


def test_llara_home_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LLARA_HOME", str(tmp_path))
    assert llara_home() == tmp_path
    monkeypatch.delenv("LLARA_HOME")
    assert llara_home() == Path.home() / ".cache" / "llara"


def test_every_hub_alias_resolves_to_its_repo_in_the_cache(empty_hf_cache: Path) -> None:
    hub_aliases = {name: alias.hub_repo for name, alias in MODEL_ALIASES.items() if alias.hub_repo}
    assert hub_aliases and set(MODEL_ALIASES) - set(hub_aliases) == {"smollm2-135m"}  # the embedded one
    for name, repo_id in hub_aliases.items():
        snapshot = _fake_snapshot(empty_hf_cache, repo_id, {"config.json": b"{}", "model.safetensors": b""})
        assert resolve_model(name) == snapshot
        assert f"`hf download {repo_id}`" in MODEL_ALIASES[name].how_to_obtain


def test_unknown_name_is_usage_error() -> None:
    with pytest.raises(UsageError) as caught:
        resolve_model("no-such-model")
    message = str(caught.value)
    assert message.startswith("unknown model 'no-such-model': not a directory and not one of the aliases: ")
    assert "smollm2-135m" in message and "llama-2-7b" in message
    assert "\n" not in message


def test_existing_directory_wins_over_alias(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shadow = tmp_path / "smollm2-135m"
    shadow.symlink_to(tiny_model_dir, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    resolved = resolve_model("smollm2-135m")
    assert resolved.is_absolute() and resolved == shadow


def test_directory_without_config_is_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"not a model directory: no config\.json and no weights"):
        resolve_model(str(tmp_path))


def test_directory_without_weights_is_usage_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(UsageError, match=r"no weights \(\*\.safetensors"):
        resolve_model(str(tmp_path))


def test_adapter_directory_is_named(tmp_path: Path) -> None:
    (tmp_path / "adapter_config.json").write_text("{}")
    (tmp_path / "adapter_model.safetensors").write_bytes(b"")
    assert is_peft_adapter_dir(tmp_path)
    assert not is_peft_adapter_dir(tmp_path / "adapter_config.json")
    with pytest.raises(UsageError, match=r"no config\.json \(it holds a PEFT adapter"):
        resolve_model(str(tmp_path))


def test_file_is_not_a_model_directory(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"")
    with pytest.raises(UsageError, match="is a file, not a model directory"):
        resolve_model(str(path))


def test_hub_alias_absent_from_cache(empty_hf_cache: Path) -> None:
    started = time.perf_counter()
    with pytest.raises(LlaraError) as caught:
        resolve_model("llama-2-7b")
    assert time.perf_counter() - started < 5
    error = caught.value
    assert not isinstance(error, UsageError) and error.exit_code == 1
    assert str(error) == (
        f"model 'llama-2-7b' (meta-llama/Llama-2-7b-hf) is not in the local Hugging Face cache ({empty_hf_cache}); "
        "download it on a machine with network access (`hf download meta-llama/Llama-2-7b-hf`) and copy the cache "
        "here, or pass a local directory with --model"
    )


def test_hub_id_absent_from_cache(empty_hf_cache: Path) -> None:
    with pytest.raises(LlaraError) as caught:
        resolve_model("BAAI/LLARA-passage")
    message = str(caught.value)
    assert message.startswith("model 'BAAI/LLARA-passage' is not a local directory, and is not in the local Hugging")
    assert "`hf download BAAI/LLARA-passage`" in message and "--model" in message


def test_hub_alias_found_in_cache(empty_hf_cache: Path) -> None:
    snapshot = _fake_snapshot(
        empty_hf_cache, "mistralai/Mistral-7B-v0.1", {"config.json": b"{}", "model.safetensors": b""}
    )
    assert resolve_model("mistral-7b") == snapshot
    assert resolve_model("Mistral-7B") == snapshot  # aliases are case-insensitive


def test_hub_alias_incomplete_in_cache(empty_hf_cache: Path) -> None:
    _fake_snapshot(empty_hf_cache, "meta-llama/Meta-Llama-3-8B", {"config.json": b"{}"})
    with pytest.raises(LlaraError, match=r"'llama-3-8b' \(meta-llama/Meta-Llama-3-8B\) is incomplete .*no weights"):
        resolve_model("llama-3-8b")


# ------------------------------------------------------------------------------------------------------ loading


@pytest.mark.parametrize(
    ("specials", "expected_pad"),
    [
        ({"unk": "[UNK]", "eos": "</s>", "pad": "[PAD]"}, "[PAD]"),
        ({"unk": "[UNK]", "eos": "</s>"}, "[UNK]"),
        ({"eos": "</s>"}, "</s>"),
    ],
    ids=["own-pad", "unk", "eos"],
)
def test_load_tokenizer_pad_fallback(tmp_path: Path, specials: dict[str, str], expected_pad: str) -> None:
    tokenizer = load_tokenizer(_save_tokenizer(tmp_path, **specials))
    assert tokenizer.pad_token == expected_pad
    assert tokenizer.padding_side == "right"
    batch = tokenizer(["hello world query", "hello"], padding=True)
    assert batch["input_ids"][1][1:] == [tokenizer.pad_token_id] * 2


def test_load_tokenizer_without_any_special_token(tmp_path: Path) -> None:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(WordLevel({"hello": 0}, unk_token=None))
    PreTrainedTokenizerFast(tokenizer_object=backend).save_pretrained(tmp_path)
    with pytest.raises(LlaraError, match="has no pad, unk or eos token"):
        load_tokenizer(tmp_path)


def test_load_tokenizer_missing(tmp_path: Path) -> None:
    with pytest.raises(LlaraError, match=f"cannot load the tokenizer from {tmp_path}"):
        load_tokenizer(tmp_path)


def test_torch_dtype() -> None:
    import torch

    assert {name: torch_dtype(name) for name in DTYPES} == {
        "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16,
    }
    with pytest.raises(UsageError, match="unknown dtype 'float64': expected one of auto, fp32, bf16, fp16"):
        torch_dtype("float64")


@pytest.mark.parametrize(("dtype", "attn"), [("fp32", "sdpa"), ("bf16", "eager")])
def test_load_causal_lm(tiny_model_dir: Path, dtype: str, attn: str) -> None:
    model = load_causal_lm(tiny_model_dir, dtype=dtype, attn_implementation=attn)
    assert {parameter.dtype for parameter in model.parameters()} == {torch_dtype(dtype)}
    assert model.config._attn_implementation == attn
    assert not model.training


def test_load_causal_lm_kwargs(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Local files only, always; trust_remote_code always passed explicitly, True only when asked for."""
    from transformers import AutoModelForCausalLM

    seen: list[dict] = []
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", lambda path, **kwargs: seen.append(kwargs))
    load_causal_lm(tiny_model_dir)
    load_causal_lm(tiny_model_dir, trust_remote_code=True)
    assert seen[0]["local_files_only"] is True and seen[0]["trust_remote_code"] is False
    assert seen[1]["trust_remote_code"] is True


def test_load_causal_lm_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown dtype 'fp8'"):
        load_causal_lm(tmp_path, dtype="fp8")
    with pytest.raises(LlaraError, match=f"cannot load the model from {tmp_path}"):
        load_causal_lm(tmp_path)
