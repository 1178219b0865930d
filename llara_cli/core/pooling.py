"""Pooling hidden states into one vector per sequence, and normalisation. Knows nothing of tokenizers."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_mean_pool(hidden_states: torch.Tensor, pool_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the states where ``pool_mask (batch, seq)`` is set; one set position = that state (eos pooling)."""
    weights = pool_mask.to(hidden_states.dtype).unsqueeze(-1)  # (batch, seq, 1)
    counts = weights.sum(dim=1).clamp(min=1)  # (batch, 1)
    return (hidden_states * weights).sum(dim=1) / counts  # (batch, dim)


def last_token_pool(hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """State of each sequence's last real token, for left or right padding alike."""
    seq_len = attention_mask.shape[1]
    positions = torch.arange(seq_len, device=attention_mask.device)  # (seq,)
    last_positions = (positions * attention_mask.long()).argmax(dim=1)  # (batch,)
    return hidden_states[torch.arange(hidden_states.shape[0], device=hidden_states.device), last_positions]


def gather_positions(hidden_states: torch.Tensor, pool_mask: torch.Tensor, count: int) -> torch.Tensor:
    """The states at the ``count`` set positions of each row, in order: ``(batch, count, dim)``."""
    batch, _, dim = hidden_states.shape
    return hidden_states[pool_mask.bool()].view(batch, count, dim)


def normalize(embeddings: torch.Tensor) -> torch.Tensor:
    """L2-normalise each row (cosine similarity becomes inner product)."""
    return F.normalize(embeddings, p=2, dim=-1)
