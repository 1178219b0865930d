"""ContrastiveModel with --mrl-dims computes the Matryoshka loss; without it, the plain InfoNCE."""
from __future__ import annotations

import pytest
import torch

from llara_cli.core.contrastive import contrastive_loss_from_embeddings, matryoshka_contrastive_loss
from llara_cli.training.contrastive_objective import ContrastiveModel


@pytest.mark.parametrize("mrl_dims", [None, (8, 4, 2)])
def test_objective_loss_is_the_matryoshka_sum_only_when_asked(mrl_dims):
    objective = ContrastiveModel(torch.nn.Identity(), group_size=2, temperature=0.05, mrl_dims=mrl_dims,
                                 mrl_weights=(1.0, 0.5, 0.25) if mrl_dims else None)
    generator = torch.Generator().manual_seed(0)
    queries = torch.nn.functional.normalize(torch.randn(3, 8, generator=generator), dim=-1)
    passages = torch.nn.functional.normalize(torch.randn(6, 8, generator=generator), dim=-1)
    expected = (contrastive_loss_from_embeddings(queries, passages, 0.05, group_size=2) if mrl_dims is None else
                matryoshka_contrastive_loss(queries, passages, 0.05, mrl_dims, (1.0, 0.5, 0.25), group_size=2))
    assert objective.loss(queries, passages).item() == pytest.approx(expected.item())
    if mrl_dims is not None:
        assert objective.loss(queries, passages).item() != pytest.approx(
            contrastive_loss_from_embeddings(queries, passages, 0.05, group_size=2).item())
