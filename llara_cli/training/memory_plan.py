"""Will a training run fit in memory? A pre-flight estimate of its peak, and the cached-loss chunk that makes a
finetuning run fit.

Contrastive finetuning holds the activations of every text of the batch until the backward pass:
``batch x (1 + group)`` texts of up to ``passage_max_length`` tokens, through every layer. On the embedded
135M model that is about 1.4 MB per token (LoRA with dropout, bf16 autocast): ``--batch-size 8 --group-size 8`` at
196 tokens is ~12,800 tokens, ~18.5 GiB -- the kernel killed it on a 24 GiB machine shared with other work. This module
estimates the peak
*before* any weight is loaded (:func:`estimate_finetune_memory`, from the model's ``config.json`` alone) and
plans the run (:func:`plan_finetune_memory`): with ``chunk_size`` unset it turns on the cached contrastive loss
(:mod:`llara_cli.training.cached_contrastive`) at the largest chunk that fits in half the available memory; a
run whose estimate exceeds the available memory is refused (UsageError) or, with ``memory_check`` off, warned
about.

The estimate is a model of the process's resident memory -- the runtime, the fp32 weights (and their bf16
autocast copies), gradients and AdamW state of the trainable ones, and the activations per token and layer of a
Llama-style decoder (hidden and MLP widths) -- with its constants fitted to the measured peaks of
``benchmarks/finetune_memory.py`` on the embedded model (results in ``benchmarks/results/finetune_memory.md``).
It is a guard against the impossible, not a promise: other decoders and other kernels may differ.

Adaptation (:func:`estimate_adapt_memory`, :func:`plan_adapt_memory`) is the same model over one joint sequence
per example (``batch x max_length`` tokens in one graph; two passes' worth without ``--joint``), usually with
every weight trainable (AdamW state for all of them: a 7B model needs ~112 GB before any activation), plus the
released objective's next-token logits over the text tokens. It has no cached loss, so a run that cannot fit is
refused with the options that shrink it (``--lora``, ``--gradient-checkpointing``, a smaller batch or length).
Both plans estimate this process's resident memory on a CPU; a run on a GPU or in several processes is not
estimated (the GPU's memory is another budget, and DeepSpeed/FSDP shard the state).
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from llara_cli.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from llara_cli.model.llara_model import ModelSource
    from llara_cli.training.adapt import AdaptConfig
    from llara_cli.training.finetune_config import FinetuneConfig

__all__ = ["MemoryEstimate", "MemoryPlan", "ModelShape", "available_memory_bytes", "estimate_adapt_memory",
           "estimate_finetune_memory", "model_shape", "not_estimated", "plan_adapt_memory", "plan_finetune_memory",
           "source_shape"]

logger = logging.getLogger(__name__)

GIB = 1024 ** 3
RUNTIME_BYTES = int(0.7 * GIB)  # python, torch, transformers, tokenizer, the Trainer (fitted intercept)
# Activation bytes per token and decoder layer kept for the backward pass, as multiples of the hidden and MLP
# widths: fitted on the embedded model with LoRA (dropout 0.1) in bf16 autocast, 47.7 KB per token and layer
# (1.43 MB per token over 30 layers; benchmarks/results/finetune_memory.md). Without dropout LoRA keeps no fp32
# copy of each adapted projection's input: the smaller hidden factor (not measured: an estimate).
HIDDEN_FACTOR_LORA_DROPOUT = 46
HIDDEN_FACTOR = 22
MLP_FACTOR = 11
ATTENTION_BYTES = 2  # per token, head and key position (the attention weights of the math kernel)
# Gradient checkpointing keeps each layer's input (and peft's bookkeeping): fitted, 26 x hidden bytes per token and
# layer (batch 8 x group 8 x 196 in chunks of 16 with checkpointing: 3.53 GiB peak, 7.38 without).
CHECKPOINT_HIDDEN_FACTOR = 26
# The cached loss's peak over one chunk's graph: the allocator still holds part of the previous chunk when the next
# is built (measured: batch 8 x group 8 x 196 tokens in chunks of 16, 7.38 GiB peak against 5.7 for one graph).
CHUNKED_ACTIVATION_FACTOR = 1.4
# Adaptation's own fit (benchmarks/results/adapt_memory.md, smollm2-135m, bf16, two steps, 8 x 128..512 tokens):
# hidden-width bytes per token and layer with every weight trained / with LoRA (whose trainable marker tokens
# and dropout keep more), and the released objective's next-token logits, bytes per text token and vocabulary
# entry (fitted 5.3: bf16 logits and their fp32 copy; rounded up). Residuals within 0.4 GiB of the measured peaks.
ADAPT_HIDDEN_FACTOR = 25
ADAPT_HIDDEN_FACTOR_LORA = 84
LM_LOGIT_BYTES = 6
AUTO_CHUNK_SHARE = 0.5  # the automatic chunk keeps the estimate within this share of the available memory
WARN_SHARE = 0.8  # above this share of the available memory: a warning


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs of a decoder: its sizes, read from ``config.json``."""

    parameters: int
    layers: int
    hidden: int
    intermediate: int
    heads: int
    tied_embeddings: bool
    vocab: int


def model_shape(model_dir: str | Path) -> ModelShape:
    """The sizes of the decoder in ``model_dir`` (its ``config.json``; an adapter directory: its base's)."""
    config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    config = config.get("text_config", config)
    hidden = int(config["hidden_size"])
    layers = int(config["num_hidden_layers"])
    heads = int(config["num_attention_heads"])
    kv_heads = int(config.get("num_key_value_heads") or heads)
    intermediate = int(config.get("intermediate_size") or 4 * hidden)
    vocab = int(config["vocab_size"])
    tied = bool(config.get("tie_word_embeddings", False))
    kv_dim = hidden // heads * kv_heads
    per_layer = hidden * (2 * hidden + 2 * kv_dim) + 3 * hidden * intermediate + 2 * hidden
    parameters = layers * per_layer + vocab * hidden * (1 if tied else 2) + hidden
    return ModelShape(parameters, layers, hidden, intermediate, heads, tied, vocab)


def source_shape(source: ModelSource) -> ModelShape:
    """The sizes of a resolved model: its decoder's, or (an adapter directory) its base model's."""
    from llara_cli.model.adapters import adapter_base_model
    from llara_cli.model.resolve import is_peft_adapter_dir, resolve_model

    model_dir, adapter_dir = source.model_dir, source.adapter_dir
    while model_dir is None:  # an adapter directory, perhaps on another adapter: the base model's sizes
        base = adapter_base_model(adapter_dir)
        if is_peft_adapter_dir(base):
            adapter_dir = Path(base)
        else:
            model_dir = resolve_model(base)
    return model_shape(model_dir)


@dataclass(frozen=True)
class MemoryEstimate:
    """The estimated peak resident memory of one run, in bytes, and its parts."""

    runtime_bytes: int
    weights_bytes: int
    training_state_bytes: int  # gradients + AdamW moments of the trainable weights
    activation_bytes: int
    tokens_in_graph: int  # the tokens whose activations are held at once

    @property
    def total_bytes(self) -> int:
        return self.runtime_bytes + self.weights_bytes + self.training_state_bytes + self.activation_bytes


def _lora_parameters(shape: ModelShape, rank: int) -> int:
    """LoRA A and B of every attention and MLP projection (all-linear)."""
    kv_dim = shape.hidden  # an upper bound (grouped-query attention has narrower k/v)
    per_layer = rank * ((shape.hidden + shape.hidden) * 2 + (shape.hidden + kv_dim) * 2
                        + (shape.hidden + shape.intermediate) * 3)
    return shape.layers * per_layer


def _activations(config: FinetuneConfig | AdaptConfig, shape: ModelShape, tokens: int, sequence: int,
                 hidden_factor: int) -> int:
    """The activations ``tokens`` tokens (of sequences up to ``sequence`` long) keep for the backward pass."""
    per_token_layer = (hidden_factor * shape.hidden + MLP_FACTOR * shape.intermediate
                       + ATTENTION_BYTES * shape.heads * sequence)
    if config.gradient_checkpointing:  # every layer's input, plus one layer recomputed at a time
        return tokens * (shape.layers * CHECKPOINT_HIDDEN_FACTOR * shape.hidden + per_token_layer)
    return tokens * shape.layers * per_token_layer


def _weights_and_state(config: FinetuneConfig | AdaptConfig, shape: ModelShape, trainable: int) -> tuple[int, int]:
    """fp32 weights (and autocast's half-precision copies); gradients + AdamW moments of ``trainable`` weights."""
    mixed = config.precision in ("bf16", "fp16")
    return shape.parameters * (4 + (2 if mixed else 0)), trainable * 12


def estimate_finetune_memory(config: FinetuneConfig, shape: ModelShape, *, chunk_size: int | None = None) -> MemoryEstimate:
    """The peak resident memory of ``llara finetune`` with ``config`` on a model of ``shape`` (CPU, one process).

    ``chunk_size`` overrides ``config.chunk_size`` (``None`` or ``0``: the whole batch in one graph).
    """
    chunk = config.chunk_size if chunk_size is None else chunk_size
    group = config.group_size or 1
    query_tokens = config.batch_size * config.query_max_length
    passage_tokens = config.batch_size * group * config.passage_max_length
    if chunk:  # one chunk of the longer side at a time
        tokens = min(chunk, config.batch_size * group) * config.passage_max_length
    else:
        tokens = query_tokens + passage_tokens
    hidden_factor = HIDDEN_FACTOR_LORA_DROPOUT if config.lora and config.lora_dropout > 0 else HIDDEN_FACTOR
    activations = _activations(config, shape, tokens, config.passage_max_length, hidden_factor)
    if chunk:
        activations = int(activations * CHUNKED_ACTIVATION_FACTOR)
    if config.lora:
        trainable = _lora_parameters(shape, config.lora_r)
    else:
        trainable = shape.parameters - (0 if shape.tied_embeddings else shape.vocab * shape.hidden)  # head frozen
    weights, state = _weights_and_state(config, shape, trainable)
    return MemoryEstimate(RUNTIME_BYTES, weights, state, activations, tokens)


def estimate_adapt_memory(config: AdaptConfig, shape: ModelShape) -> MemoryEstimate:
    """The peak resident memory of ``llara adapt`` with ``config`` on a model of ``shape`` (CPU, one process):
    ``batch x max_length`` tokens in one graph (twice that without the joint pass: both sides' graphs are kept)."""
    tokens = config.batch_size * config.max_length * (1 if config.joint else 2)
    hidden_factor = ADAPT_HIDDEN_FACTOR_LORA if config.lora else ADAPT_HIDDEN_FACTOR
    activations = _activations(config, shape, tokens, config.max_length, hidden_factor)
    if config.objective_settings().lm_loss_weight > 0:  # next-token logits over the text tokens
        activations += config.batch_size * config.max_length * shape.vocab * LM_LOGIT_BYTES
    trainable = _lora_parameters(shape, config.lora_r) if config.lora else shape.parameters
    weights, state = _weights_and_state(config, shape, trainable)
    return MemoryEstimate(RUNTIME_BYTES, weights, state, activations, tokens)


def available_memory_bytes() -> int:
    """Memory this process may still use: what the kernel reports available (and the cgroup allows), plus what
    the process already holds."""
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except OSError:
        pass
    if available is None:
        import psutil

        available = int(psutil.virtual_memory().available)
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        if limit != "max":
            available = min(available, int(limit) - used)
    except (OSError, ValueError):
        pass
    return max(0, available) + _own_rss_bytes()


def _own_rss_bytes() -> int:
    try:
        for line in Path(f"/proc/{os.getpid()}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@dataclass(frozen=True)
class MemoryPlan:
    """What a run will do about memory: its chunk size (0: off), the estimate, the memory available."""

    chunk_size: int
    estimate: MemoryEstimate | None  # None: not estimated (a GPU run, several processes)
    available_bytes: int
    chosen: bool = False  # the chunk size was chosen here (``chunk_size`` unset)
    notes: tuple[str, ...] = field(default=())
    unestimated_reason: str = ""  # why ``estimate`` is None

    def describe(self) -> str:
        if self.estimate is None:
            return f"memory: not estimated ({self.unestimated_reason})"
        chunk = f"cached loss, {self.chunk_size} texts a pass" if self.chunk_size else "whole batch in one pass"
        how = " (chosen to fit)" if self.chosen and self.chunk_size else ""
        return (f"memory: estimated peak {self.estimate.total_bytes / GIB:.1f} GiB of "
                f"{self.available_bytes / GIB:.1f} GiB available; {chunk}{how}")


def plan_finetune_memory(config: FinetuneConfig, shape: ModelShape, *, available_bytes: int | None = None,
                         distributed: bool = False) -> MemoryPlan:
    """Choose the chunk size (when ``config.chunk_size`` is None) and check that the run fits.

    Raises UsageError when even the planned run's estimate exceeds ``available_bytes`` and ``config.memory_check``
    is on (with it off, the plan carries a warning note). Under ``distributed`` (several processes) nothing is
    chosen: the cached loss runs in one process only.
    """
    available = available_memory_bytes() if available_bytes is None else available_bytes
    chosen = config.chunk_size is None
    chunk = config.chunk_size or 0
    if chosen and not distributed:
        chunk = _fitting_chunk(config, shape, int(available * AUTO_CHUNK_SHARE))
    estimate = estimate_finetune_memory(config, shape, chunk_size=chunk)
    advice = ("lower --batch-size/--group-size/--passage-max-length, or add --gradient-checkpointing"
              if chunk else "pass --chunk-size (the cached contrastive loss) or --gradient-checkpointing, or "
              "lower --batch-size/--group-size/--passage-max-length")
    notes = _check_fits(estimate, available, advice, config.memory_check)
    return MemoryPlan(chunk, estimate, available, chosen=chosen and chunk > 0, notes=notes)


def plan_adapt_memory(config: AdaptConfig, shape: ModelShape, *, available_bytes: int | None = None) -> MemoryPlan:
    """Check that an adaptation run fits: UsageError when its estimate exceeds ``available_bytes`` and
    ``config.memory_check`` is on (off: a warning note)."""
    available = available_memory_bytes() if available_bytes is None else available_bytes
    estimate = estimate_adapt_memory(config, shape)
    advice = ("add --gradient-checkpointing, or lower --batch-size/--max-length (--grad-accum keeps the global "
              "batch)" if config.lora else "train LoRA adapters (--lora), add --gradient-checkpointing, or lower "
              "--batch-size/--max-length (--grad-accum keeps the global batch)")
    return MemoryPlan(0, estimate, available, notes=_check_fits(estimate, available, advice, config.memory_check))


def not_estimated(reason: str) -> MemoryPlan:
    """The plan of a run whose memory is not this module's to estimate (on a GPU, in several processes)."""
    return MemoryPlan(0, None, 0, unestimated_reason=reason)


def _check_fits(estimate: MemoryEstimate, available: int, advice: str, memory_check: bool) -> tuple[str, ...]:
    """Refuse (UsageError) an estimate over ``available`` when ``memory_check``; else the notes to warn with."""
    notes = []
    if estimate.total_bytes > available:
        message = (f"this run needs about {estimate.total_bytes / GIB:.1f} GiB (estimated: "
                   f"{estimate.tokens_in_graph:,} tokens in one graph) but {available / GIB:.1f} GiB are available; "
                   f"{advice}")
        if memory_check:
            raise UsageError(message + " (--no-memory-check starts it anyway)")
        notes.append(message)
    elif estimate.total_bytes > WARN_SHARE * available:
        notes.append(f"this run may use {estimate.total_bytes / GIB:.1f} GiB of the {available / GIB:.1f} GiB "
                     "available; other work on the machine could push it out of memory")
    for note in notes:
        logger.warning(note)
    return tuple(notes)


def _fitting_chunk(config: FinetuneConfig, shape: ModelShape, budget: int) -> int:
    """0 when the whole batch fits in ``budget``; else the largest power-of-two chunk that does (at least 1)."""
    if estimate_finetune_memory(config, shape, chunk_size=0).total_bytes <= budget:
        return 0
    texts = config.batch_size * (config.group_size or 1)
    chunk = 1
    while chunk * 2 < texts and estimate_finetune_memory(config, shape, chunk_size=chunk * 2).total_bytes <= budget:
        chunk *= 2
    return chunk
