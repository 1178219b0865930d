"""One llara model: a causal LM with its tokenizer, :class:`LlaraConfig` and :class:`PromptFormat`, resolved once.

Shaped like Tevatron's ``EncoderModel``: :meth:`LlaraModel.load` for inference and :meth:`LlaraModel.build` for
training (LoRA, gradient checkpointing) construct it; :meth:`LlaraModel.embed` is the embedding of one side of
a laid-out batch (:mod:`llara_cli.model.embedding_pass`); :meth:`LlaraModel.save` writes the HF (or peft adapter)
directory with its ``llara_config.json``.

What the user typed -- a directory, an alias, a hub id, or a ``llara finetune`` adapter directory -- is resolved
once into a :class:`ModelSource` (config, tokenizer with the prompt family's marker tokens, where the weights
are), cheaply and before any weights load, so a training run checks its settings first and loads from the same
source afterwards.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from llara_cli.core.prompts import (
    TEMPLATES,
    PromptFamily,
    PromptFormat,
    QueryPrompt,
    Side,
    add_marker_tokens,
    parse_query_prompt,
)
from llara_cli.errors import UsageError
from llara_cli.model.adapters import LoraSettings, adapter_base_model, add_lora, apply_adapter
from llara_cli.model.config import LlaraConfig, resolve_config
from llara_cli.model.embedding_pass import embed_side
from llara_cli.model.files import has_tokenizer_files, is_peft_adapter_dir
from llara_cli.model.resolve import load_causal_lm, load_tokenizer, resolve_model

logger = logging.getLogger(__name__)

DEFAULT_DTYPE = "fp32"
DEFAULT_ATTENTION = "sdpa"
MAX_ADAPTER_DEPTH = 8  # adapter on adapter on ...: a cycle of directories would otherwise never end


def model_reference(model: str) -> str:
    """How a model is recorded (embeddings, adapters): an absolute path for a directory, else the name as given."""
    path = Path(model).expanduser()
    return str(path.resolve()) if path.is_dir() else model


def adapter_base_reference(model: str) -> str:
    """What a LoRA adapter records as its base (``base_model_name_or_path``): a name plain peft/transformers resolve.

    A directory: its absolute path. An alias: its hub id (``llama-2-7b`` -> ``meta-llama/Llama-2-7b-hf``, found in
    the local hub cache), or for the embedded ``smollm2-135m`` the directory it was converted into (under
    ``$LLARA_HOME/models``), which ``AutoModelForCausalLM.from_pretrained`` reads. Anything else, as given.
    """
    from llara_cli.model.resolve import MODEL_ALIASES

    path = Path(model).expanduser()
    if path.is_dir():
        return str(path.resolve())
    alias = MODEL_ALIASES.get(model.strip().lower())
    if alias is None:
        return model
    if alias.hub_repo is not None:
        return alias.hub_repo
    return str(resolve_model(model).resolve())


def prompt_format_of(config: LlaraConfig, tokenizer) -> PromptFormat:
    """The prompt layout ``config`` asks for, bound to ``tokenizer`` (whose marker tokens must be there)."""
    return PromptFormat.from_tokenizer(TEMPLATES[config.prompt_family], tokenizer, config.prompt_layout,
                                       config.query_prompt)


@dataclass(frozen=True)
class ModelSource:
    """A model reference resolved, before any weights are loaded: its config, tokenizer and weight location.

    ``model_dir`` is a full model directory; for a PEFT adapter directory it is None and ``adapter_dir`` is set
    (its base model is loaded first). ``added_markers`` counts the marker tokens added to the tokenizer, whose
    embedding rows the weights get when they load.
    """

    reference: str
    config: LlaraConfig
    tokenizer: Any  # a transformers PreTrainedTokenizerBase
    model_dir: Path | None = None
    adapter_dir: Path | None = None
    added_markers: int = 0

    @property
    def prompt_format(self) -> PromptFormat:
        return prompt_format_of(self.config, self.tokenizer)

    @classmethod
    def resolve(cls, model: str, *, prompt_family: PromptFamily | str | None = None,
                trust_remote_code: bool = False, default_family: PromptFamily = PromptFamily.PAPER) -> ModelSource:
        """Resolve ``model`` (raises UsageError/LlaraError for an unknown, absent or mismatched model);
        ``default_family`` is the family of a plain model when ``prompt_family`` is None."""
        if is_peft_adapter_dir(model):  # `llara finetune` output: base model + LoRA adapter
            adapter_dir = Path(model).expanduser()
            base = adapter_base_model(adapter_dir)
            if not is_peft_adapter_dir(base):
                resolve_model(base)  # LlaraError now, not after the settings were checked
            config = resolve_config(LlaraConfig.load(adapter_dir), prompt_family, str(adapter_dir))
            tokenizer = _adapter_tokenizer(adapter_dir, trust_remote_code)
            return cls(model, config, tokenizer, adapter_dir=adapter_dir)
        model_dir = resolve_model(model)  # LlaraError when e.g. the 7B weights are not here
        tokenizer = load_tokenizer(model_dir, trust_remote_code=trust_remote_code)
        config = resolve_config(LlaraConfig.load(model_dir), prompt_family, model, tokenizer.get_vocab(),
                                default_family=default_family)
        added = add_marker_tokens(tokenizer, None, TEMPLATES[config.prompt_family])
        return cls(model, config, tokenizer, model_dir=model_dir, added_markers=added)


def _adapter_tokenizer(adapter_dir: Path, trust_remote_code: bool, depth: int = 0):
    """The adapter's own tokenizer (with the marker tokens of its finetuning), else its base model's."""
    if has_tokenizer_files(adapter_dir):
        return load_tokenizer(adapter_dir, trust_remote_code=trust_remote_code)
    _check_depth(adapter_dir, depth)
    base = adapter_base_model(adapter_dir)
    if is_peft_adapter_dir(base):
        return _adapter_tokenizer(Path(base), trust_remote_code, depth + 1)
    return load_tokenizer(resolve_model(base), trust_remote_code=trust_remote_code)


def _check_depth(adapter_dir: Path, depth: int) -> None:
    if depth > MAX_ADAPTER_DEPTH:
        raise UsageError(f"{adapter_dir}: adapters nested more than {MAX_ADAPTER_DEPTH} deep (a cycle?)")


def _load_weights(source: ModelSource, *, dtype: str, attn_implementation: str, trust_remote_code: bool,
                  merge: bool, depth: int = 0) -> nn.Module:
    """The causal LM of ``source``: its embeddings sized to the tokenizer, an adapter applied (merged if asked)."""
    options = dict(dtype=dtype, attn_implementation=attn_implementation, trust_remote_code=trust_remote_code)
    if source.adapter_dir is None:
        causal_lm = load_causal_lm(source.model_dir, **options)
        if source.added_markers:
            logger.info("added %d marker tokens for the %s prompt family", source.added_markers,
                        source.config.prompt_family.value)
            causal_lm.resize_token_embeddings(len(source.tokenizer))
        return causal_lm
    _check_depth(source.adapter_dir, depth)
    base = adapter_base_model(source.adapter_dir)
    if is_peft_adapter_dir(base):
        inner = ModelSource.resolve(base, trust_remote_code=trust_remote_code)
        causal_lm = _load_weights(inner, merge=True, depth=depth + 1, **options)
    else:
        causal_lm = load_causal_lm(resolve_model(base), **options)
    if causal_lm.get_input_embeddings().weight.shape[0] < len(source.tokenizer):
        causal_lm.resize_token_embeddings(len(source.tokenizer))  # marker rows: trained values are in the adapter
    return apply_adapter(causal_lm, source.adapter_dir, merge=merge, trust_remote_code=trust_remote_code)


def enable_gradient_checkpointing(causal_lm: nn.Module) -> None:
    """Recompute activations in the backward pass (non-reentrant), under the name this transformers uses."""
    enable = getattr(causal_lm, "activation_checkpointing_enable", None)  # transformers >= 5.2x's name
    if enable is not None:
        enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        causal_lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def save_model_dir(out_dir: str | Path, causal_lm: nn.Module, tokenizer, config: LlaraConfig) -> None:
    """Write an HF model directory (safetensors; an adapter directory for a peft model), tokenizer, llara config."""
    out_dir = Path(out_dir)
    causal_lm.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    config.save(out_dir)


class LlaraModel:
    """A causal LM that embeds queries and passages the llara way: its tokenizer, config and prompt format."""

    def __init__(self, causal_lm: nn.Module, tokenizer, config: LlaraConfig, *, name: str = "") -> None:
        self.causal_lm = causal_lm
        self.tokenizer = tokenizer
        self.config = config
        self.name = name  # recorded with embeddings and indexes
        self.prompt_format = prompt_format_of(config, tokenizer)

    @classmethod
    def load(cls, model: str | ModelSource, *, dtype: str = DEFAULT_DTYPE,
             prompt_family: PromptFamily | str | None = None, trust_remote_code: bool = False,
             attn_implementation: str = DEFAULT_ATTENTION, merge: bool = True,
             query_prompt: QueryPrompt | str | None = None) -> LlaraModel:
        """Load for inference: a llara or plain HF model directory, an alias, a hub id in the local cache, or an
        adapter directory (``merge`` folds the adapter into the weights; otherwise a PeftModel).

        ``dtype`` is a concrete :data:`llara_cli.runtime.dtypes.DTYPES` name. A ``ModelSource`` already resolved
        is loaded as it is (``prompt_family`` is then ignored). ``query_prompt`` replaces the model's own (its
        ``llara_config.json`` ``query_prompt``) for this load.
        """
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # llara draws its own progress; a weights bar is noise
        source = model if isinstance(model, ModelSource) else ModelSource.resolve(
            model, prompt_family=prompt_family, trust_remote_code=trust_remote_code)
        causal_lm = _load_weights(source, dtype=dtype, attn_implementation=attn_implementation,
                                  trust_remote_code=trust_remote_code, merge=merge)
        loaded = cls(causal_lm, source.tokenizer, source.config, name=model_reference(source.reference))
        if query_prompt is not None:
            loaded.use_query_prompt(query_prompt)
        return loaded

    @classmethod
    def build(cls, model: str | ModelSource, *, prompt_family: PromptFamily | str | None = None,
              trust_remote_code: bool = False, attn_implementation: str = DEFAULT_ATTENTION,
              gradient_checkpointing: bool = False, lora: LoraSettings | None = None,
              base_reference: str | None = None) -> LlaraModel:
        """Load for training (float32 weights, adapters merged): gradient checkpointing and LoRA as asked.

        A training run passes the ``ModelSource`` it checked its settings against. ``base_reference`` is written
        into a LoRA adapter as its base model. Seed torch first: added marker embeddings and LoRA weights are
        drawn at random.
        """
        built = cls.load(model, dtype=DEFAULT_DTYPE, prompt_family=prompt_family,
                         trust_remote_code=trust_remote_code, attn_implementation=attn_implementation)
        if gradient_checkpointing:
            enable_gradient_checkpointing(built.causal_lm)
        if lora is not None:
            built.causal_lm = add_lora(built.causal_lm, built.tokenizer, built.config.prompt_family, lora,
                                       base_reference)
        return built

    def use_query_prompt(self, query_prompt: QueryPrompt | str) -> None:
        """Lay queries out with ``query_prompt`` from now on (the config and the prompt format together)."""
        self.config = dataclasses.replace(self.config, query_prompt=parse_query_prompt(query_prompt))
        self.prompt_format = self.prompt_format.with_query_prompt(self.config.query_prompt)

    @property
    def dim(self) -> int:
        return int(self.causal_lm.config.hidden_size)

    @property
    def dtype(self):
        return self.causal_lm.dtype

    @property
    def device(self):
        return next(self.causal_lm.parameters()).device

    def max_length(self, side: Side) -> int:
        """The tokens per text the model was trained with on ``side`` (the default for encoding)."""
        return self.config.max_length(side)

    def embed(self, batch: dict, side: Side):
        """Embeddings ``(batch, dim)`` float32 of one side of a batch (:func:`llara_cli.core.batching.collate_side`)."""
        return embed_side(self.causal_lm, batch, side, normalized=self.config.normalize)

    def save(self, out_dir: str | Path, config: LlaraConfig | None = None) -> None:
        """Write the model directory (``config`` replaces the model's own llara config when given)."""
        save_model_dir(out_dir, self.causal_lm, self.tokenizer, config or self.config)
