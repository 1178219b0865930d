"""Loading a llara model saved as a PEFT (LoRA) adapter: its base model plus the adapter, merged for inference.

``llara finetune`` writes, by default, an *adapter directory*: ``adapter_config.json`` +
``adapter_model.safetensors`` (the LoRA weights, and the marker-token embeddings when the prompt family adds
tokens), the tokenizer, and ``llara_config.json`` (stage ``finetuned``). ``adapter_config.json`` records the
model the adapter was trained on in ``base_model_name_or_path``: an alias (``smollm2-135m``), a hub id, or an
absolute directory -- possibly another adapter directory, which is then loaded the same way, recursively.
A relative directory is looked up beside the adapter directory when it does not exist from the working directory.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

from llara_cli.core.config import LlaraConfig
from llara_cli.core.models import ADAPTER_CONFIG_FILE, is_peft_adapter_dir
from llara_cli.data.files import read_json
from llara_cli.errors import UsageError

logger = logging.getLogger(__name__)

BASE_MODEL_FIELD = "base_model_name_or_path"
MAX_ADAPTER_DEPTH = 8  # adapter on adapter on ...: a cycle of directories would otherwise never end


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


def load_adapter_model(adapter_dir: str | Path, *, dtype: str = "fp32", prompt_family: str | None = None,
                       trust_remote_code: bool = False, attn_implementation: str = "sdpa", merge: bool = True,
                       _depth: int = 0):  # noqa: ANN202 - (causal_lm, tokenizer, LlaraConfig)
    """``(causal_lm, tokenizer, config)`` for an adapter directory, like :func:`core.loading.load_llara_model`.

    The base model is loaded with ``dtype``, its embeddings grown to the adapter's tokenizer when the
    finetuning added marker tokens, then the adapter is applied; ``merge`` folds it into the weights (plain
    HF model, inference speed of the base) instead of returning the ``PeftModel``.
    """
    from llara_cli.core.loading import choose_config
    from llara_cli.core.models import load_causal_lm, load_tokenizer, resolve_model

    adapter_dir = Path(adapter_dir).expanduser()
    if _depth > MAX_ADAPTER_DEPTH:
        raise UsageError(f"{adapter_dir}: adapters nested more than {MAX_ADAPTER_DEPTH} deep (a cycle?)")
    base = adapter_base_model(adapter_dir)
    config = choose_config(LlaraConfig.load(adapter_dir), prompt_family, str(adapter_dir))
    if is_peft_adapter_dir(base):
        causal_lm, base_tokenizer, _ = load_adapter_model(
            base, dtype=dtype, trust_remote_code=trust_remote_code, attn_implementation=attn_implementation,
            merge=True, _depth=_depth + 1,
        )
    else:
        base_dir = resolve_model(base)
        causal_lm = load_causal_lm(base_dir, dtype=dtype, attn_implementation=attn_implementation,
                                   trust_remote_code=trust_remote_code)
        base_tokenizer = None
    has_tokenizer = any((adapter_dir / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json"))
    tokenizer = (load_tokenizer(adapter_dir, trust_remote_code=trust_remote_code) if has_tokenizer
                 else base_tokenizer or load_tokenizer(resolve_model(base), trust_remote_code=trust_remote_code))
    rows = causal_lm.get_input_embeddings().weight.shape[0]
    if rows < len(tokenizer):  # marker tokens added for finetuning: their trained rows are in the adapter
        causal_lm.resize_token_embeddings(len(tokenizer))
    return _apply_adapter(causal_lm, adapter_dir, merge=merge), tokenizer, config


def _apply_adapter(causal_lm, adapter_dir: Path, *, merge: bool):  # noqa: ANN001, ANN202
    from peft import PeftModel

    try:
        with warnings.catch_warnings():  # peft 0.21 still calls transformers' deprecated is_gradient_checkpointing
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            model = PeftModel.from_pretrained(causal_lm, str(adapter_dir), is_trainable=False)
    except (OSError, ValueError, RuntimeError, KeyError) as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise UsageError(f"cannot apply the adapter in {adapter_dir}: {first_line}") from None
    if not merge:
        return model.eval()
    return model.merge_and_unload().eval()
