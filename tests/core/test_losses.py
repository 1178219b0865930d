from __future__ import annotations

import torch

from llara_cli.core.losses import IGNORE_INDEX, bow_loss, marker_max_bow_loss, target_set_mask


def naive_bow_loss(embeddings, weight, target_lists, excluded=()):
    """Per-example loop, straight from eq. 6: -mean over the set of targets of log softmax(W e)."""
    losses = []
    for embedding, targets in zip(embeddings, target_lists):
        distinct = sorted({token for token in targets if token not in excluded})
        if not distinct:
            continue
        log_probs = torch.log_softmax(weight @ embedding, dim=-1)
        losses.append(-log_probs[distinct].mean())
    return torch.stack(losses).mean()


def test_target_set_mask_deduplicates_and_drops_padding_and_excluded_ids():
    targets = torch.tensor([[5, 5, 2, IGNORE_INDEX], [1, 3, IGNORE_INDEX, IGNORE_INDEX]])
    mask = target_set_mask(targets, vocab_size=8, excluded_ids=[1])
    assert mask[0].nonzero().flatten().tolist() == [2, 5]
    assert mask[1].nonzero().flatten().tolist() == [3]


def test_bow_loss_equals_the_naive_loop():
    torch.manual_seed(0)
    embeddings, weight = torch.randn(3, 6), torch.randn(20, 6)
    target_lists = [[1, 4, 4, 7], [3], [2, 9, 11, 19, 2]]
    width = max(map(len, target_lists))
    padded = torch.tensor([targets + [IGNORE_INDEX] * (width - len(targets)) for targets in target_lists])
    loss = bow_loss(embeddings, weight, target_set_mask(padded, 20, excluded_ids=[9]))
    assert torch.allclose(loss, naive_bow_loss(embeddings, weight, target_lists, excluded={9}), atol=1e-6)


def test_examples_without_targets_are_skipped_not_averaged_as_zero():
    torch.manual_seed(1)
    embeddings, weight = torch.randn(2, 4), torch.randn(10, 4)
    padded = torch.tensor([[3, 4], [IGNORE_INDEX, IGNORE_INDEX]])
    loss = bow_loss(embeddings, weight, target_set_mask(padded, 10))
    assert torch.allclose(loss, naive_bow_loss(embeddings[:1], weight, [[3, 4]]))


def test_marker_max_variant_max_pools_marker_logits_before_the_softmax():
    torch.manual_seed(2)
    markers, weight = torch.randn(2, 8, 5), torch.randn(12, 5)
    padded = torch.tensor([[1, 2, 3], [4, 4, IGNORE_INDEX]])
    loss = marker_max_bow_loss(markers, weight, target_set_mask(padded, 12))
    expected = []
    for states, targets in zip(markers, [[1, 2, 3], [4]]):
        logits = (states @ weight.T).max(dim=0).values
        expected.append(-torch.log_softmax(logits, dim=-1)[targets].mean())
    assert torch.allclose(loss, torch.stack(expected).mean(), atol=1e-6)


def test_gradient_reaches_the_embeddings_and_the_head():
    embeddings = torch.randn(2, 4, requires_grad=True)
    weight = torch.randn(10, 4, requires_grad=True)
    bow_loss(embeddings, weight, target_set_mask(torch.tensor([[1, 2], [3, 3]]), 10)).backward()
    assert embeddings.grad.abs().sum() > 0 and weight.grad.abs().sum() > 0
