"""The Matryoshka contrastive loss against a naive per-query loop."""
from __future__ import annotations

import math

import pytest
import torch

from llara_cli.core.contrastive import contrastive_loss_from_embeddings, matryoshka_contrastive_loss


def naive_matryoshka_loss(queries, passages, temperature, dims, weights, group_size, in_batch):
    total = 0.0
    for dim, weight in zip(dims, weights):
        loss = 0.0
        for query_index, query in enumerate(queries.tolist()):
            query_prefix = query[:dim]
            query_norm = math.sqrt(sum(value * value for value in query_prefix))
            candidates = range(len(passages)) if in_batch else range(query_index * group_size,
                                                                     (query_index + 1) * group_size)
            logits = []
            for passage_index in candidates:
                passage_prefix = passages[passage_index].tolist()[:dim]
                passage_norm = math.sqrt(sum(value * value for value in passage_prefix))
                cosine = sum(a * b for a, b in zip(query_prefix, passage_prefix)) / (query_norm * passage_norm)
                logits.append(cosine / temperature)
            positive = query_index * group_size if in_batch else 0
            top = max(logits)
            loss += -(logits[positive] - top - math.log(sum(math.exp(logit - top) for logit in logits)))
        total += weight * loss / len(queries)
    return total


@pytest.mark.parametrize("in_batch", [True, False])
def test_matryoshka_loss_equals_a_naive_loop_over_prefixes(in_batch):
    generator = torch.Generator().manual_seed(0)
    queries = torch.randn(3, 12, generator=generator)
    passages = torch.randn(3 * 4, 12, generator=generator)
    dims, weights = (12, 6, 3), (1.0, 0.5, 2.0)
    loss = matryoshka_contrastive_loss(queries, passages, 0.05, dims, weights, group_size=4, in_batch=in_batch)
    expected = naive_matryoshka_loss(queries, passages, 0.05, dims, weights, 4, in_batch)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_full_dim_alone_is_the_plain_loss_of_normalised_embeddings():
    generator = torch.Generator().manual_seed(1)
    queries = torch.nn.functional.normalize(torch.randn(4, 8, generator=generator), dim=-1)
    passages = torch.nn.functional.normalize(torch.randn(8, 8, generator=generator), dim=-1)
    plain = contrastive_loss_from_embeddings(queries, passages, 0.1, group_size=2)
    assert matryoshka_contrastive_loss(queries, passages, 0.1, [8], group_size=2).item() == pytest.approx(plain.item())


def test_gradients_reach_only_the_prefix_for_a_prefix_only_loss():
    queries = torch.randn(2, 6, requires_grad=True)
    passages = torch.randn(4, 6, requires_grad=True)
    matryoshka_contrastive_loss(queries, passages, 0.1, [2], group_size=2).backward()
    assert queries.grad[:, 2:].abs().sum() == 0 and queries.grad[:, :2].abs().sum() > 0


def test_bad_dims_or_weights_are_refused():
    queries, passages = torch.randn(2, 6), torch.randn(4, 6)
    with pytest.raises(ValueError, match="1..6"):
        matryoshka_contrastive_loss(queries, passages, 0.1, [7])
    with pytest.raises(ValueError, match="2 Matryoshka dims but 1 weights"):
        matryoshka_contrastive_loss(queries, passages, 0.1, [6, 3], [1.0])
