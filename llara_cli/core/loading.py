"""Loading and saving llara models: HF weights + tokenizer + ``llara_config.json``."""
from __future__ import annotations

import logging
from collections.abc import Collection
from pathlib import Path

from llara_cli.core.config import LlaraConfig
from llara_cli.core.prompts import TEMPLATES, add_marker_tokens, detect_family, family_for, parse_family

logger = logging.getLogger(__name__)


def choose_config(saved: LlaraConfig | None, requested_family: str | None, model: str,
                  vocabulary: Collection[str] = ()) -> LlaraConfig:
    """The saved config wins; a plain HF model whose tokenizer ``vocabulary`` has the markers is flagembedding.

    A ``--prompt-family`` contradicting either is refused (:func:`core.prompts.family_for`).
    """
    requested = parse_family(requested_family) if requested_family else None
    if saved is not None:
        family_for(requested, saved.prompt_family, model=model, own_source=f"its {saved.stage} llara_config.json")
        return saved
    detected = detect_family(vocabulary)
    family = family_for(requested, detected, model=model, own_source="its tokenizer has the <s1>..<s16> markers")
    if detected is not None:
        logger.info("model %s: its tokenizer has the <s1>..<s16> markers: the %s prompt family",
                    model, detected.value)
    return LlaraConfig(prompt_family=family, base_model=model)


def load_llara_model(model: str, *, dtype: str = "fp32", prompt_family: str | None = None,
                     trust_remote_code: bool = False, attn_implementation: str = "sdpa"):  # noqa: ANN201
    """``(causal_lm, tokenizer, config)`` for a model directory or alias; marker tokens added when needed."""
    from transformers.utils import logging as transformers_logging

    from llara_cli.core.models import is_peft_adapter_dir, load_causal_lm, load_tokenizer, resolve_model

    transformers_logging.disable_progress_bar()  # llara draws its own progress; a weights bar is noise
    if is_peft_adapter_dir(model):  # `llara finetune` output: base model + LoRA adapter, merged
        from llara_cli.core.adapters import load_adapter_model

        return load_adapter_model(model, dtype=dtype, prompt_family=prompt_family,
                                  trust_remote_code=trust_remote_code, attn_implementation=attn_implementation)
    model_dir = resolve_model(model)
    tokenizer = load_tokenizer(model_dir, trust_remote_code=trust_remote_code)
    config = choose_config(LlaraConfig.load(model_dir), prompt_family, model, tokenizer.get_vocab())
    causal_lm = load_causal_lm(model_dir, dtype=dtype, attn_implementation=attn_implementation,
                               trust_remote_code=trust_remote_code)
    added = add_marker_tokens(tokenizer, causal_lm, TEMPLATES[config.prompt_family])
    if added:
        logger.info("added %d marker tokens for the %s prompt family", added, config.prompt_family.value)
    return causal_lm, tokenizer, config


def save_llara_model(out_dir: str | Path, causal_lm, tokenizer, config: LlaraConfig) -> None:  # noqa: ANN001
    """Write an HF model directory (safetensors) with its tokenizer and ``llara_config.json``."""
    out_dir = Path(out_dir)
    causal_lm.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    config.save(out_dir)
