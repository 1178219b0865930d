"""PEFT (LoRA) adapters on a causal LM: wrapping a model for training, and applying a saved adapter directory.

``llara finetune`` writes, by default, an *adapter directory*: ``adapter_config.json`` +
``adapter_model.safetensors`` (the LoRA weights, and the marker-token embeddings when the prompt family adds
tokens), the tokenizer, and ``llara_config.json`` (stage ``finetuned``). ``adapter_config.json`` records the
model the adapter was trained on in ``base_model_name_or_path``: an alias (``smollm2-135m``), a hub id, or an
absolute directory -- possibly another adapter directory (:class:`llara_cli.model.llara_model.LlaraModel` loads
it the same way, recursively). A relative directory is looked up beside the adapter directory when it does not
exist from the working directory.
"""
from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from llara_cli.core.prompts import TEMPLATES, PromptFamily
from llara_cli.errors import UsageError
from llara_cli.model.files import ADAPTER_CONFIG_FILE, first_line
from llara_cli.model.trust import LOAD_ERRORS, is_refused_pickle, refuse_unsafe_pickle, trust_kwargs
from llara_cli.storage.files import read_json

logger = logging.getLogger(__name__)

BASE_MODEL_FIELD = "base_model_name_or_path"
ALL_LINEAR = "all-linear"  # peft's name for every linear layer of the decoder (not the LM head)
# peft 0.21 still calls transformers' deprecated is_gradient_checkpointing
PEFT_CHECKPOINTING_WARNING = ".*is_gradient_checkpointing.*"


@dataclass(frozen=True)
class LoraSettings:
    """The LoRA adapters to train: rank, alpha, dropout, and the module names (``all-linear``: every projection)."""

    r: int
    alpha: int
    dropout: float
    targets: Sequence[str] = (ALL_LINEAR,)


def adapter_base_model(adapter_dir: str | Path) -> str:
    """The model the adapter applies to, as recorded in ``adapter_config.json`` (relative dirs made absolute)."""
    adapter_dir = Path(adapter_dir)
    payload = read_json(adapter_dir / ADAPTER_CONFIG_FILE)
    base = payload.get(BASE_MODEL_FIELD) if isinstance(payload, dict) else None
    if not isinstance(base, str) or not base.strip():
        raise UsageError(f"{adapter_dir / ADAPTER_CONFIG_FILE}: no {BASE_MODEL_FIELD}: cannot tell which base model "
                         "the adapter belongs to")
    candidate = Path(base).expanduser()
    if not candidate.is_absolute() and not candidate.exists() and (adapter_dir / candidate).is_dir():
        return str((adapter_dir / candidate).resolve())
    return base


def apply_adapter(causal_lm, adapter_dir: Path, *, merge: bool,
                  trust_remote_code: bool = False):
    """``causal_lm`` with the adapter of ``adapter_dir``: merged into plain weights, or as an inference PeftModel.

    A pickled ``adapter_model.bin`` is loaded with ``weights_only`` (peft's default); one it refuses is named.
    """
    from peft import PeftModel

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=PEFT_CHECKPOINTING_WARNING, category=FutureWarning)
            model = PeftModel.from_pretrained(causal_lm, str(adapter_dir), is_trainable=False,
                                              **trust_kwargs(trust_remote_code))
    except (*LOAD_ERRORS, RuntimeError, KeyError) as error:
        if is_refused_pickle(error):
            raise refuse_unsafe_pickle(adapter_dir, error) from None
        raise UsageError(f"cannot apply the adapter in {adapter_dir}: {first_line(error)}") from None
    if not merge:
        return model.eval()
    return model.merge_and_unload().eval()


def add_lora(causal_lm, tokenizer, prompt_family: PromptFamily, settings: LoraSettings,
             base_reference: str | None = None):
    """Wrap in trainable LoRA adapters; the marker tokens of the prompt family get trainable embeddings.

    ``base_reference``, when given, is written as the adapter's ``base_model_name_or_path`` (how it loads again).
    """
    from peft import LoraConfig, get_peft_model

    markers = TEMPLATES[prompt_family].added_tokens
    marker_ids = [int(token_id) for token_id in tokenizer.convert_tokens_to_ids(list(markers))] if markers else None
    targets = tuple(settings.targets)
    lora = LoraConfig(
        r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
        target_modules=targets[0] if targets == (ALL_LINEAR,) else list(targets),
        task_type="CAUSAL_LM", trainable_token_indices=marker_ids,
    )
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=PEFT_CHECKPOINTING_WARNING, category=FutureWarning)
            model = get_peft_model(causal_lm, lora)
    except ValueError as error:
        raise UsageError(f"--lora-targets {','.join(targets)}: {first_line(error)}") from None
    if base_reference is not None:
        for adapter_config in model.peft_config.values():
            adapter_config.base_model_name_or_path = base_reference
    return model
