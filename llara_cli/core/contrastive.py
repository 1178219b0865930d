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
"""
from __future__ import annotations

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
