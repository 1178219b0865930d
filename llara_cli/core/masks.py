"""Attention masks and position ids, as pure functions of the per-token segments.

The joint LLaRA pass runs ``text + passage suffix + query suffix`` once. Every token attends causally to the
non-pad tokens before it, except that query-suffix tokens cannot see the passage suffix. A token's position
id is the number of tokens it can see before itself, so the query suffix continues right after the text,
exactly as in a separate EBAR pass. Masks are additive floats ``(batch, 1, query, key)`` in the model dtype:
0 where attention is allowed, ``finfo(dtype).min`` elsewhere (boolean masks give wrong results with eager).
"""
from __future__ import annotations

import torch

from llara_cli.core.prompts import Segment


def allowed_attention(segment_ids: torch.Tensor) -> torch.Tensor:
    """Which keys each query may attend to: ``(batch, seq, seq)`` bool from ``segment_ids (batch, seq)``."""
    seq_len = segment_ids.shape[1]
    causal = torch.ones(seq_len, seq_len, dtype=torch.bool, device=segment_ids.device).tril()  # (seq, seq)
    is_real = segment_ids != Segment.PAD  # (batch, seq)
    queries = segment_ids.unsqueeze(2)  # (batch, seq, 1)
    keys = segment_ids.unsqueeze(1)  # (batch, 1, seq)
    hidden_suffix = (queries == Segment.SECOND_SUFFIX) & (keys == Segment.FIRST_SUFFIX)  # (batch, seq, seq)
    allowed = causal & is_real.unsqueeze(1) & is_real.unsqueeze(2) & ~hidden_suffix  # (batch, seq, seq)
    # A pad token attends to itself only: no row is fully masked, so no NaN can arise and leak.
    pad_diagonal = torch.diag_embed(~is_real)  # (batch, seq, seq)
    return allowed | pad_diagonal


def position_ids_from_allowed(allowed: torch.Tensor, segment_ids: torch.Tensor) -> torch.Tensor:
    """Position = number of visible real tokens before this one; pads get 0. ``(batch, seq)`` long."""
    is_real = segment_ids != Segment.PAD  # (batch, seq)
    visible = (allowed & is_real.unsqueeze(1)).sum(dim=-1) - 1  # (batch, seq)
    return visible.clamp(min=0).masked_fill(~is_real, 0)


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``(batch, 1, seq, seq)`` float mask: 0 where allowed, the dtype's minimum elsewhere."""
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)  # (batch, seq, seq)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask.unsqueeze(1)


def joint_attention_inputs(segment_ids: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The 4D additive mask and the position ids for a (possibly joint) batch of laid-out sequences."""
    allowed = allowed_attention(segment_ids)
    return additive_mask(allowed, dtype), position_ids_from_allowed(allowed, segment_ids)


def padded_position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids for an ordinary 2D padding mask: count real tokens, so left and right padding agree."""
    return (attention_mask.long().cumsum(dim=-1) - 1).clamp(min=0)  # (batch, seq)
