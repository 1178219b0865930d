"""The contrastive (InfoNCE) objective of finetuning, as pure functions of embeddings: no model, no tokenizer.

A batch holds ``n_queries`` queries and, for each, a *group* of ``group_size`` passages: its positive first, then
``group_size - 1`` hard negatives, laid out query by query (``passages[i * group_size]`` is query ``i``'s
positive). With in-batch negatives every query is scored against every passage of the batch, so the other
queries' positives and negatives count as negatives too; the label of query ``i`` is ``i * group_size``.
Without them, a query is scored against its own group only and its label is ``0``.

Under DDP (``cross_device``), the embeddings of every process are gathered *with* their gradients
(:func:`gather_with_grad`), so the loss is computed over the global batch, identically on each process. The
backward of :func:`torch.distributed.nn.functional.all_gather` sums the gradients every process computes for a
tensor onto that tensor's owner; as each process computes the same global loss, that sum is ``world_size`` times
the gradient of the loss, and DDP's averaging of parameter gradients divides it back: the update equals the one
a single process would make on the concatenated batch (tested with two gloo processes).

Matryoshka (:func:`matryoshka_contrastive_loss`, ``llara finetune --mrl-dims``): the same InfoNCE on the first
``d`` dimensions of every embedding, L2-normalised again, for each trained ``d``, summed with weights
(Kusupati et al., 2022, "Matryoshka Representation Learning"; FlagEmbedding's ``use_mrl``/``mrl_dims``): each
prefix becomes an embedding on its own, which ``llara encode --dim`` stores.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def contrastive_labels(n_queries: int, group_size: int, *, in_batch: bool = True, offset: int = 0,
                       device: torch.device | None = None) -> torch.Tensor:
    """Index of each query's positive among its candidate passages: ``(offset + i) * group_size``, or 0."""
    if not in_batch:
        return torch.zeros(n_queries, dtype=torch.long, device=device)  # (n_queries,)
    return (torch.arange(n_queries, device=device) + offset) * group_size  # (n_queries,)


def contrastive_scores(query_embeddings: torch.Tensor, passage_embeddings: torch.Tensor, group_size: int, *,
                       in_batch: bool = True) -> torch.Tensor:
    """Similarity logits before the temperature.

    In-batch: ``(n_queries, n_queries * group_size)``, every query against every passage.
    Otherwise: ``(n_queries, group_size)``, every query against its own group.
    """
    n_queries, dim = query_embeddings.shape
    if passage_embeddings.shape != (n_queries * group_size, dim):
        raise ValueError(
            f"expected {n_queries} x {group_size} passage embeddings of dim {dim}, got {tuple(passage_embeddings.shape)}"
        )
    if in_batch:
        return query_embeddings @ passage_embeddings.T  # (n_queries, n_queries * group_size)
    groups = passage_embeddings.view(n_queries, group_size, dim)  # (n_queries, group_size, dim)
    return torch.einsum("qd,qgd->qg", query_embeddings, groups)  # (n_queries, group_size)


def contrastive_loss_from_embeddings(query_embeddings: torch.Tensor, passage_embeddings: torch.Tensor,
                                     temperature: float, *, group_size: int | None = None,
                                     in_batch: bool = True) -> torch.Tensor:
    """InfoNCE: mean cross-entropy of ``scores / temperature`` against each query's positive.

    ``query_embeddings (n_queries, dim)``, ``passage_embeddings (n_queries * group_size, dim)`` grouped per query,
    positive first; ``group_size`` defaults to ``n_passages // n_queries``. Computed in float32.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    n_queries = query_embeddings.shape[0]
    if n_queries == 0:
        raise ValueError("no queries")
    group_size = group_size or passage_embeddings.shape[0] // n_queries
    scores = contrastive_scores(query_embeddings.float(), passage_embeddings.float(), group_size, in_batch=in_batch)
    labels = contrastive_labels(n_queries, group_size, in_batch=in_batch, device=scores.device)  # (n_queries,)
    return F.cross_entropy(scores / temperature, labels)


def matryoshka_contrastive_loss(query_embeddings: torch.Tensor, passage_embeddings: torch.Tensor,
                                temperature: float, dims: Sequence[int], weights: Sequence[float] | None = None, *,
                                group_size: int | None = None, in_batch: bool = True,
                                normalize: bool = True) -> torch.Tensor:
    """``sum_i weights[i] * InfoNCE(prefix_i(queries), prefix_i(passages))`` over the prefixes ``[:, :dims[i]]``.

    Each prefix is L2-normalised again when ``normalize`` (the embeddings are cosine-trained); ``weights``
    default to 1 each. With ``dims == [full dim]`` and unit weight this is
    :func:`contrastive_loss_from_embeddings` of normalised embeddings.
    """
    full_dim = query_embeddings.shape[1]
    weights = [1.0] * len(dims) if weights is None else list(weights)
    if len(weights) != len(dims):
        raise ValueError(f"{len(dims)} Matryoshka dims but {len(weights)} weights")
    if not dims or any(not 0 < dim <= full_dim for dim in dims):
        raise ValueError(f"Matryoshka dims must be in 1..{full_dim}, got {list(dims)}")
    total = query_embeddings.new_zeros((), dtype=torch.float32)
    for dim, weight in zip(dims, weights):
        query_prefix = query_embeddings[:, :dim].float()  # (n_queries, dim)
        passage_prefix = passage_embeddings[:, :dim].float()  # (n_passages, dim)
        if normalize:
            query_prefix = F.normalize(query_prefix, dim=-1)
            passage_prefix = F.normalize(passage_prefix, dim=-1)
        total = total + weight * contrastive_loss_from_embeddings(
            query_prefix, passage_prefix, temperature, group_size=group_size, in_batch=in_batch)
    return total


def contrastive_accuracy(query_embeddings: torch.Tensor, passage_embeddings: torch.Tensor, *,
                         group_size: int | None = None, in_batch: bool = True) -> torch.Tensor:
    """Fraction of queries whose positive scores highest among their candidates (a training diagnostic)."""
    n_queries = query_embeddings.shape[0]
    group_size = group_size or passage_embeddings.shape[0] // n_queries
    with torch.no_grad():
        scores = contrastive_scores(query_embeddings.float(), passage_embeddings.float(), group_size, in_batch=in_batch)
        labels = contrastive_labels(n_queries, group_size, in_batch=in_batch, device=scores.device)
        return (scores.argmax(dim=1) == labels).float().mean()


def distributed_world_size() -> int:
    """Processes in the default group (1 when torch.distributed is not initialised)."""
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor (n, ...)`` from every process along dim 0, in rank order, keeping the autograd graph.

    Every process must pass the same shape. Without an initialised process group, returns ``tensor``.
    """
    if distributed_world_size() == 1:
        return tensor
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(tensor.contiguous()), dim=0)  # (world_size * n, ...)
