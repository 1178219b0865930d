"""The joint LLaRA attention pattern as a FlexAttention block mask, built from the segment ids.

The same rule as :func:`llara_cli.core.masks.allowed_attention` (causal over real tokens; the query suffix
cannot see the passage suffix; a pad token sees itself only), written as a ``mask_mod`` so FlexAttention can
skip fully masked blocks instead of adding a dense ``(batch, 1, seq, seq)`` float mask. An alternative to the
additive 4D mask where SDPA would fall back to its slow math kernel; ``benchmarks/gpu/check.py`` tests that
both give the same attention output.
"""
from __future__ import annotations

from typing import Any

import torch

from llara_cli.core.prompts import Segment

PAD, FIRST_SUFFIX, SECOND_SUFFIX = int(Segment.PAD), int(Segment.FIRST_SUFFIX), int(Segment.SECOND_SUFFIX)


def segment_mask_mod(segment_ids: torch.Tensor):
    """``mask_mod(batch, head, query, key) -> bool`` for ``segment_ids (batch, seq)``."""

    def mask_mod(batch: torch.Tensor, head: torch.Tensor, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        query_segment, key_segment = segment_ids[batch, query], segment_ids[batch, key]
        real = (query_segment != PAD) & (key_segment != PAD)
        hidden_suffix = (query_segment == SECOND_SUFFIX) & (key_segment == FIRST_SUFFIX)
        pad_self = (query == key) & (query_segment == PAD)
        return ((key <= query) & real & ~hidden_suffix) | pad_self

    return mask_mod


def segment_block_mask(segment_ids: torch.Tensor) -> Any:
    """A FlexAttention ``BlockMask`` for the joint pattern of ``segment_ids (batch, seq)`` (all heads alike)."""
    from torch.nn.attention.flex_attention import create_block_mask

    batch, seq = segment_ids.shape
    return create_block_mask(segment_mask_mod(segment_ids), batch, None, seq, seq, device=segment_ids.device)
