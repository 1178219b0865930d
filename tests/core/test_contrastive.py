"""InfoNCE maths without a model: shapes, labels, a naive loop, and the 2-process gather with gradients."""
from __future__ import annotations

import math
import os

import pytest
import torch
import torch.nn.functional as F

from llara_cli.core.contrastive import (
    contrastive_accuracy,
    contrastive_labels,
    contrastive_loss_from_embeddings,
    contrastive_scores,
    gather_with_grad,
)

N_QUERIES, GROUP, DIM = 3, 4, 8


def embeddings(seed=0, n_queries=N_QUERIES, group=GROUP, dim=DIM):
    generator = torch.Generator().manual_seed(seed)
    queries = F.normalize(torch.randn(n_queries, dim, generator=generator), dim=-1)  # (n_queries, dim)
    passages = F.normalize(torch.randn(n_queries * group, dim, generator=generator), dim=-1)  # (n_queries * group, dim)
    return queries, passages


def naive_loss(queries, passages, temperature, group, in_batch):
    """One query at a time, written out: -log softmax of the positive among the candidates."""
    losses = []
    for index, query in enumerate(queries):
        candidates = passages if in_batch else passages[index * group:(index + 1) * group]
        positive = index * group if in_batch else 0
        scores = [float(query @ passage) / temperature for passage in candidates]
        log_normaliser = math.log(sum(math.exp(score - max(scores)) for score in scores)) + max(scores)
        losses.append(log_normaliser - scores[positive])
    return sum(losses) / len(losses)


def test_labels_point_at_each_querys_positive():
    assert contrastive_labels(3, 4).tolist() == [0, 4, 8]
    assert contrastive_labels(2, 4, offset=3).tolist() == [12, 16]  # rank 1's queries in a gathered batch
    assert contrastive_labels(3, 4, in_batch=False).tolist() == [0, 0, 0]


def test_scores_shapes_with_and_without_in_batch_negatives():
    queries, passages = embeddings()
    assert contrastive_scores(queries, passages, GROUP).shape == (N_QUERIES, N_QUERIES * GROUP)
    own = contrastive_scores(queries, passages, GROUP, in_batch=False)
    assert own.shape == (N_QUERIES, GROUP)
    in_batch = contrastive_scores(queries, passages, GROUP)
    for index in range(N_QUERIES):  # the own-group scores are the diagonal blocks of the in-batch ones
        assert torch.allclose(own[index], in_batch[index, index * GROUP:(index + 1) * GROUP])


@pytest.mark.parametrize("in_batch", [True, False])
@pytest.mark.parametrize("temperature", [0.01, 0.5])
def test_loss_equals_the_naive_loop(in_batch, temperature):
    queries, passages = embeddings(seed=1)
    loss = contrastive_loss_from_embeddings(queries, passages, temperature, in_batch=in_batch)
    assert loss.item() == pytest.approx(naive_loss(queries, passages, temperature, GROUP, in_batch), rel=1e-5)


def test_group_of_one_uses_in_batch_negatives_only():
    queries, passages = embeddings(seed=2, group=1)
    loss = contrastive_loss_from_embeddings(queries, passages, 0.1, group_size=1)
    assert loss.item() == pytest.approx(naive_loss(queries, passages, 0.1, 1, True), rel=1e-5)


def test_loss_is_small_when_each_query_matches_its_positive_and_accuracy_is_one():
    queries = torch.eye(N_QUERIES, DIM)  # (n_queries, dim)
    passages = torch.zeros(N_QUERIES * GROUP, DIM)
    passages[::GROUP] = queries  # positives equal the queries, negatives orthogonal (zero)
    assert contrastive_loss_from_embeddings(queries, passages, 0.01).item() < 1e-6
    assert contrastive_accuracy(queries, passages).item() == 1.0


def test_loss_is_float32_and_differentiable_from_bf16():
    queries, passages = embeddings(seed=3)
    queries = queries.to(torch.bfloat16).requires_grad_()
    loss = contrastive_loss_from_embeddings(queries, passages.to(torch.bfloat16), 0.05)
    assert loss.dtype == torch.float32
    loss.backward()
    assert queries.grad is not None and queries.grad.abs().sum() > 0


def test_bad_arguments_are_refused():
    queries, passages = embeddings()
    with pytest.raises(ValueError, match="temperature"):
        contrastive_loss_from_embeddings(queries, passages, 0.0)
    with pytest.raises(ValueError, match="passage embeddings"):
        contrastive_loss_from_embeddings(queries, passages[:-1], 0.1, group_size=GROUP)


def test_gather_without_a_process_group_is_the_identity():
    tensor = torch.randn(2, 3, requires_grad=True)
    assert gather_with_grad(tensor) is tensor


# ----------------------------------------------------------------------------------- two gloo processes

WORLD, LOCAL_QUERIES, TEMPERATURE = 2, 2, 0.05


def global_batch():
    """Inputs of the global batch and a shared projection: embeddings = normalize(inputs @ weight)."""
    generator = torch.Generator().manual_seed(7)
    query_inputs = torch.randn(WORLD * LOCAL_QUERIES, DIM, generator=generator)
    passage_inputs = torch.randn(WORLD * LOCAL_QUERIES * GROUP, DIM, generator=generator)
    weight = torch.randn(DIM, DIM, generator=generator)
    return query_inputs, passage_inputs, weight


def loss_and_gradient(query_inputs, passage_inputs, weight, gather):
    weight = weight.clone().requires_grad_()
    queries = F.normalize(query_inputs @ weight, dim=-1)  # (n, dim)
    passages = F.normalize(passage_inputs @ weight, dim=-1)  # (n * group, dim)
    if gather:
        queries, passages = gather_with_grad(queries), gather_with_grad(passages)
    loss = contrastive_loss_from_embeddings(queries, passages, TEMPERATURE, group_size=GROUP)
    loss.backward()
    return loss.detach(), weight.grad


def _worker(rank, init_file, out_file):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        query_inputs, passage_inputs, weight = global_batch()
        local_queries = query_inputs[rank * LOCAL_QUERIES:(rank + 1) * LOCAL_QUERIES]
        local_passages = passage_inputs[rank * LOCAL_QUERIES * GROUP:(rank + 1) * LOCAL_QUERIES * GROUP]
        loss, gradient = loss_and_gradient(local_queries, local_passages, weight, gather=True)
        dist.all_reduce(gradient)  # what DDP does with parameter gradients: the mean over processes
        gradient /= WORLD
        losses = [torch.zeros(()) for _ in range(WORLD)]
        dist.all_gather(losses, loss)
        if rank == 0:
            torch.save({"losses": torch.stack(losses), "gradient": gradient}, out_file)
        dist.barrier()  # no rank tears gloo down while another still talks to it (that aborts the other)
    finally:
        dist.destroy_process_group()
    # Done (rank 0 saved the result): leave without the interpreter's teardown, where a thread still joinable
    # under load aborted a process once (std::terminate, SIGABRT) after the work had succeeded
    os._exit(0)


def test_two_process_gather_equals_one_process_on_the_concatenated_batch(tmp_path):
    import torch.multiprocessing as mp

    out_file = tmp_path / "result.pt"
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(out_file)), nprocs=WORLD, join=True)
    result = torch.load(out_file)
    single_loss, single_gradient = loss_and_gradient(*global_batch(), gather=False)
    assert torch.allclose(result["losses"], single_loss.expand(WORLD), atol=1e-6)  # every rank: the global loss
    assert torch.allclose(result["gradient"], single_gradient, atol=1e-6)
