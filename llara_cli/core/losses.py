"""The LLaRA bag-of-words loss (paper eq. 6) and its released-code variant, as pure tensor functions.

For an embedding ``e`` and the LM-head matrix ``W (vocab, dim)`` the model already has, the probability of
every vocabulary token is ``softmax(W e)``; the loss is the negative mean log-probability over the *set* of
target tokens (EBAE: the input's own tokens; EBAR: the next sentence's tokens). No parameter is added.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def target_set_mask(target_ids: torch.Tensor, vocab_size: int, excluded_ids: Iterable[int] = ()) -> torch.Tensor:
    """Multi-hot ``(batch, vocab)`` bool of each row's distinct targets; ``IGNORE_INDEX`` and excluded ids dropped.

    ``target_ids (batch, n_targets)`` is padded with ``IGNORE_INDEX``; scattering makes it a set (duplicates
    count once), as the paper's loss is over the set of tokens.
    """
    valid = target_ids != IGNORE_INDEX  # (batch, n_targets)
    for token_id in excluded_ids:
        valid &= target_ids != token_id
    mask = torch.zeros(target_ids.shape[0], vocab_size, dtype=torch.bool, device=target_ids.device)  # (batch, vocab)
    rows = torch.nonzero(valid, as_tuple=True)[0]  # (n_valid,)
    mask[rows, target_ids[valid]] = True
    return mask


def bow_loss_from_logits(logits: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
    """Mean over examples of ``-mean(log_softmax(logits)[targets])``; examples without targets are skipped."""
    log_probs = F.log_softmax(logits.float(), dim=-1)  # (batch, vocab)
    target_counts = target_mask.sum(dim=-1)  # (batch,)
    has_targets = target_counts > 0  # (batch,)
    if not bool(has_targets.any()):
        return logits.sum() * 0.0  # keeps the graph; nothing to learn from this batch
    per_example = -(log_probs * target_mask).sum(dim=-1) / target_counts.clamp(min=1)  # (batch,)
    return per_example[has_targets].mean()


def vocabulary_logits(states: torch.Tensor, lm_head_weight: torch.Tensor,
                      lm_head_bias: torch.Tensor | None = None) -> torch.Tensor:
    """``states (..., dim)`` projected on the LM head: ``(..., vocab)``, in float32 for a stable softmax."""
    return F.linear(states, lm_head_weight, lm_head_bias).float()


def bow_loss(embeddings: torch.Tensor, lm_head_weight: torch.Tensor, target_mask: torch.Tensor,
             lm_head_bias: torch.Tensor | None = None) -> torch.Tensor:
    """Paper eq. 6: the embedding itself predicts the target set through the LM head."""
    return bow_loss_from_logits(vocabulary_logits(embeddings, lm_head_weight, lm_head_bias), target_mask)


def marker_max_bow_loss(marker_states: torch.Tensor, lm_head_weight: torch.Tensor, target_mask: torch.Tensor,
                        lm_head_bias: torch.Tensor | None = None) -> torch.Tensor:
    """Released-code variant: each marker's logits, max-pooled over the markers, then the same loss.

    ``marker_states (batch, n_markers, dim)``. The released code also divides by 10; that
    scale (``bow_scale`` of :mod:`core.objective`) is applied by the caller.
    """
    logits = vocabulary_logits(marker_states, lm_head_weight, lm_head_bias).amax(dim=1)  # (batch, vocab)
    return bow_loss_from_logits(logits, target_mask)


def mean_of_present(side_losses: Sequence[torch.Tensor], present: Sequence[bool]) -> torch.Tensor:
    """The mean of the losses of the sides that had targets (a batch without next spans: EBAE alone).

    As the released code, which uses one side's loss alone when the other has none; with no side present the
    (zero, graph-keeping) losses are summed.
    """
    kept = [loss for loss, has_targets in zip(side_losses, present) if has_targets]
    if not kept:
        return sum(side_losses[1:], side_losses[0])
    return sum(kept[1:], kept[0]) / len(kept)
