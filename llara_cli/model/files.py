"""Where model files live and what a model directory must hold: llara's home, the offline Hugging Face cache.

Shared by alias resolution (:mod:`llara_cli.model.resolve`) and the GGUF conversion of the embedded default model
(:mod:`llara_cli.model.gguf`); imports nothing heavy.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from llara_cli.errors import UsageError
from llara_cli.runtime.home import LLARA_HOME_ENV, llara_home  # noqa: F401 (re-exported)

MODELS_SUBDIR = "models"

CONFIG_FILE = "config.json"
ADAPTER_CONFIG_FILE = "adapter_config.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
WEIGHT_PATTERNS = ("*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin", "pytorch_model.bin.index.json")


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache, read from the environment now (not when huggingface_hub was imported)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg_cache = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(xdg_cache).expanduser() / "huggingface" / "hub"


def force_offline() -> None:
    """Make every Hugging Face call in this process local-only, even if ``HF_HUB_OFFLINE`` was unset.

    Sets the environment variables (read by huggingface_hub/transformers at import) and, if huggingface_hub is
    already imported, its module-level flag (read at call time).
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True


def is_peft_adapter_dir(path: str | Path) -> bool:
    """Whether ``path`` is a directory holding a PEFT adapter (``adapter_config.json``)."""
    path = Path(path)
    return path.is_dir() and (path / ADAPTER_CONFIG_FILE).is_file()


def has_tokenizer_files(directory: str | Path) -> bool:
    """Whether ``directory`` holds a saved tokenizer."""
    return any((Path(directory) / name).is_file() for name in TOKENIZER_FILES)


def missing_model_files(model_dir: Path) -> list[str]:
    """What a Hugging Face model directory lacks, as human-readable items (empty: complete enough to load)."""
    missing = []
    if not (model_dir / CONFIG_FILE).is_file():
        missing.append(CONFIG_FILE)
    if not any(next(model_dir.glob(pattern), None) for pattern in WEIGHT_PATTERNS):
        missing.append("weights (*.safetensors or pytorch_model*.bin)")
    return missing


def check_model_dir(model_dir: Path) -> Path:
    """Return ``model_dir`` if it holds a loadable model, else raise a UsageError naming what is missing."""
    missing = missing_model_files(model_dir)
    if not missing:
        return model_dir
    hint = ""
    if is_peft_adapter_dir(model_dir):
        hint = f" (it holds a PEFT adapter, {ADAPTER_CONFIG_FILE}: load it on top of its base model)"
    raise UsageError(f"{model_dir}: not a model directory: no {' and no '.join(missing)}{hint}")


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (library errors are reported in one line)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
