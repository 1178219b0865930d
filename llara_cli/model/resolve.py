"""Model resolution and loading: aliases, local directories, the offline Hugging Face cache.

``resolve_model`` turns what the user typed (a directory, an alias, a hub id) into a local directory holding a
Hugging Face causal LM (``config.json`` + weights + tokenizer); ``load_tokenizer`` and ``load_causal_lm`` load it.
Nothing here ever reaches the network: the hub is consulted through its local cache only. The default alias,
``smollm2-135m``, is built once from the GGUF embedded in a package (:mod:`llara_cli.model.gguf`).
A llara model as a whole (config, tokenizer, prompt, adapters) is :class:`llara_cli.model.llara_model.LlaraModel`.

torch and transformers are imported inside the functions that need them, so the CLI root starts fast.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llara_cli.errors import LlaraError, UsageError
from llara_cli.model.files import (
    ADAPTER_CONFIG_FILE,
    CONFIG_FILE,
    check_model_dir,
    first_line,
    force_offline,
    hf_hub_cache,
    is_peft_adapter_dir,
    llara_home,
    missing_model_files,
)
from llara_cli.model.gguf import EMBEDDED_ALIAS, EMBEDDED_PIP_NAME, ensure_embedded_smollm2
from llara_cli.model.trust import (
    LOAD_ERRORS,
    asks_for_remote_code,
    check_custom_code,
    is_refused_pickle,
    refuse_custom_code,
    refuse_unsafe_pickle,
    trust_kwargs,
)
from llara_cli.runtime.dtypes import DTYPES, torch_dtype

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [  # DTYPES, torch_dtype, llara_home and is_peft_adapter_dir are re-exported: callers import them here
    "ADAPTER_CONFIG_FILE", "DEFAULT_MODEL_ALIAS", "DTYPES", "MODEL_ALIASES", "ModelAlias", "is_peft_adapter_dir",
    "llara_home", "load_causal_lm", "load_tokenizer", "resolve_model", "torch_dtype",
]

logger = logging.getLogger(__name__)

HUB_ID_PATTERN = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")

@dataclass(frozen=True)
class ModelAlias:
    """A short model name the CLI accepts, and where its weights come from."""

    name: str
    description: str
    how_to_obtain: str
    hub_repo: str | None = None  # a Hugging Face repo looked up in the local cache; None: embedded in a package


DEFAULT_MODEL_ALIAS = EMBEDDED_ALIAS

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
        return check_model_dir(path.absolute())
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
    missing = missing_model_files(snapshot)
    if missing:
        raise LlaraError(
            f"{label} is incomplete in the local Hugging Face cache "
            f"({snapshot}: no {' and no '.join(missing)}); {advice}"
        )
    return snapshot


# ------------------------------------------------------------------------------------------------------- loading


def _trust_kwargs(trust_remote_code: bool) -> dict[str, Any]:
    """``trust_remote_code`` is always passed, ``False`` unless the user asked: transformers never prompts."""
    return trust_kwargs(trust_remote_code)


def _load_error(what: str, model_dir: str | Path, error: BaseException) -> LlaraError:
    """The one-line error of a failed load: custom code and refused pickles say so and name the culprit."""
    if is_refused_pickle(error):
        return refuse_unsafe_pickle(model_dir, error)
    if asks_for_remote_code(error):
        return refuse_custom_code(model_dir, "transformers needs its own code to load it")
    return LlaraError(f"cannot load the {what} from {model_dir}: {first_line(error)}")


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


def load_tokenizer(model_dir: str | Path, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """Load the tokenizer of ``model_dir`` for right-padded batches.

    The pad token is the tokenizer's own, else its unk, else its eos (Llama-3-style tokenizers have no unk).
    """
    force_offline()
    check_custom_code(model_dir, trust_remote_code)
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(
            str(model_dir), local_files_only=True, **_trust_kwargs(trust_remote_code)
        )
    except LOAD_ERRORS as error:
        raise _load_error("tokenizer", model_dir, error) from None
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
    check_custom_code(model_dir, trust_remote_code)
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
    except LOAD_ERRORS as error:
        raise _load_error("model", model_dir, error) from None
    except SafetensorError as error:  # a truncated or corrupt weight file
        raise LlaraError(f"{_unreadable_weight_file(Path(model_dir))}: not a readable safetensors file "
                         f"({first_line(error)}); copy or convert the model again") from None
    if device is not None:
        model = model.to(device)
    return model
