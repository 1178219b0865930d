"""The trust boundary of model loading: no code from a model directory runs unless the user passed
``--trust-remote-code``, and no pickle that could run code is ever unpickled.

Every tokenizer, config, model and adapter load passes ``trust_remote_code`` explicitly (``False`` unless asked
for), so transformers never falls back to asking on stdin. A directory whose ``config.json`` or
``tokenizer_config.json`` maps a class to its own ``.py`` files (``auto_map``) for a type transformers does not
know is refused before transformers is called, in one line naming the directory and the flag.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from pickle import UnpicklingError
from typing import Any

from llara_cli.errors import UsageError

CUSTOM_CODE_FILES = ("config.json", "tokenizer_config.json")
AUTO_MAP_FIELD = "auto_map"
TRUST_FLAG = "--trust-remote-code"
# transformers' and torch's words for "this needs custom code" and "this pickle was refused"
REMOTE_CODE_WORDS = ("trust_remote_code", "custom code")
# what a failed Hugging Face / peft load raises, custom-code and refused-pickle cases included
LOAD_ERRORS = (OSError, ValueError, ImportError, EOFError, UnpicklingError)
PICKLE_FILE_PATTERNS = ("*.bin", "*.pt", "*.pth", "*.pkl", "*.ckpt")
TORCH_SERIALIZATION = os.path.join("torch", "serialization.py")


def trust_kwargs(trust_remote_code: bool) -> dict[str, Any]:
    """The keyword every Hugging Face load gets: explicit, so transformers never prompts on stdin."""
    return {"trust_remote_code": bool(trust_remote_code)}


def _auto_map_of(path: Path) -> dict[str, Any] | None:
    try:
        payload = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return None  # an unreadable config is reported by the loader itself
    if not isinstance(payload, dict):
        return None
    auto_map = payload.get(AUTO_MAP_FIELD)
    return {"model_type": payload.get("model_type"), "tokenizer_class": payload.get("tokenizer_class"),
            "auto_map": auto_map} if auto_map else None


def _known_model_type(model_type: Any) -> bool:
    from transformers import CONFIG_MAPPING

    return isinstance(model_type, str) and model_type in CONFIG_MAPPING


def _known_tokenizer_class(name: Any) -> bool:
    import transformers

    if not isinstance(name, str):
        return False
    return any(hasattr(transformers, candidate) for candidate in (name, name.removesuffix("Fast"), f"{name}Fast"))


def custom_code_reason(directory: str | Path) -> str | None:
    """Why loading ``directory`` would need its own Python code (None: transformers' classes suffice)."""
    directory = Path(directory)
    config = _auto_map_of(directory / "config.json")
    if config is not None and not _known_model_type(config["model_type"]):
        return f"config.json maps model type '{config['model_type']}' to its own code ({AUTO_MAP_FIELD})"
    tokenizer = _auto_map_of(directory / "tokenizer_config.json")
    if tokenizer is not None and not _known_tokenizer_class(tokenizer["tokenizer_class"]):
        return f"tokenizer_config.json maps tokenizer '{tokenizer['tokenizer_class']}' to its own code ({AUTO_MAP_FIELD})"
    return None


def refuse_custom_code(directory: str | Path, reason: str) -> UsageError:
    return UsageError(f"{directory}: holds custom model code ({reason}); llara runs it only with {TRUST_FLAG} "
                      "(pass it only for a model you trust)")


def check_custom_code(directory: str | Path, trust_remote_code: bool) -> None:
    """Refuse a directory that needs its own code to load, unless the user trusts it."""
    if trust_remote_code:
        return
    reason = custom_code_reason(directory)
    if reason is not None:
        raise refuse_custom_code(directory, reason)


def asks_for_remote_code(error: BaseException) -> bool:
    """Whether a transformers error says the load needs custom code."""
    return any(word in str(error) for word in REMOTE_CODE_WORDS)


def is_refused_pickle(error: BaseException) -> bool:
    """Whether ``error`` is torch/pickle refusing an unsafe payload (``weights_only=True``)."""
    return isinstance(error, UnpicklingError) or "Weights only load failed" in str(error)


def _loaded_file(error: BaseException) -> Path | None:
    """The file torch was loading when ``error`` was raised: the ``f`` argument of ``torch.load`` in the
    traceback, the error it was raised from included (a path, or an open file with its name)."""
    found = None
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        traceback = error.__traceback__
        while traceback is not None:
            frame = traceback.tb_frame
            if frame.f_code.co_name == "load" and frame.f_code.co_filename.endswith(TORCH_SERIALIZATION):
                source = frame.f_locals.get("f")
                name = getattr(source, "name", source)
                if isinstance(name, (str, os.PathLike)):
                    found = Path(name)
            traceback = traceback.tb_next
        if found is not None:
            return found
        error = error.__cause__ or error.__context__
    return None


def refuse_unsafe_pickle(location: str | Path, error: BaseException | None = None) -> UsageError:
    """One line naming the pickle file refused as unsafe: the one torch was loading when it refused (found in
    ``error``'s traceback), else ``location`` itself or the pickle files of that directory."""
    location = Path(location)
    loaded = _loaded_file(error) if error is not None else None
    if loaded is not None:
        files = [loaded]
    else:
        files = [location] if location.is_file() else sorted(
            path for pattern in PICKLE_FILE_PATTERNS for path in location.glob(pattern))
    named = ", ".join(str(path) for path in files) if files else str(location)
    return UsageError(f"{named}: refused as unsafe: a pickle that could run code when loaded; "
                      "convert the weights to safetensors")
