"""The one embedding path: a laid-out prompt batch through the decoder, pooled, normalised.

Inference (:class:`llara_cli.encode.encoder.LlaraEncoder`), finetuning (the contrastive objective) and the
two-pass adaptation ablation all run :func:`side_hidden_states`; inference and finetuning then pool with
:func:`embed_side`. A *side batch* holds ``{side}_input_ids``, ``{side}_segment_ids`` and ``{side}_pool_mask``
(:func:`llara_cli.core.batching.collate_side`). The joint adaptation pass (:mod:`llara_cli.training.adaptation_objective`)
only changes the attention mask and position ids it gives the stock decoder (:mod:`llara_cli.core.masks`).
"""
from __future__ import annotations

import torch
from torch import nn

from llara_cli.core.batching import POOL_MASK_KEYS, side_key
from llara_cli.core.masks import joint_attention_inputs, padded_position_ids
from llara_cli.core.pooling import masked_mean_pool, normalize
from llara_cli.core.prompts import Segment, Side


def decoder_of(causal_lm: nn.Module) -> nn.Module:
    """The transformer body of a causal LM (no LM head), also through a peft wrapper."""
    return causal_lm.get_decoder()


def run_decoder(decoder: nn.Module, input_ids: torch.Tensor, segment_ids: torch.Tensor, *, joint: bool) -> torch.Tensor:
    """Last hidden states ``(batch, seq, dim)``.

    ``joint`` builds the 4D mask that hides the passage suffix from the query suffix; otherwise the ordinary
    2D padding mask is used (the model's own causal attention, faster), with padding-aware position ids.
    """
    if joint:
        dtype = decoder.get_input_embeddings().weight.dtype
        attention_mask, position_ids = joint_attention_inputs(segment_ids, dtype)
    else:
        attention_mask = (segment_ids != Segment.PAD).long()  # (batch, seq)
        position_ids = padded_position_ids(attention_mask)
    outputs = decoder(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
    return outputs.last_hidden_state


def side_hidden_states(causal_lm: nn.Module, batch: dict[str, torch.Tensor], side: Side) -> torch.Tensor:
    """Last hidden states ``(batch, seq, dim)`` of one side's prompts (ordinary causal attention)."""
    return run_decoder(decoder_of(causal_lm), batch[side_key(side, "input_ids")], batch[side_key(side, "segment_ids")],
                       joint=False)


def embed_side(causal_lm: nn.Module, batch: dict[str, torch.Tensor], side: Side, *, normalized: bool) -> torch.Tensor:
    """Embeddings ``(batch, dim)`` in float32 of one side of a batch, L2-normalised when ``normalized``."""
    hidden = side_hidden_states(causal_lm, batch, side)  # (batch, seq, dim)
    embeddings = masked_mean_pool(hidden, batch[POOL_MASK_KEYS[side]]).float()  # (batch, dim)
    return normalize(embeddings) if normalized else embeddings
