from __future__ import annotations

import torch

from llara_cli.core.pooling import gather_positions, last_token_pool, masked_mean_pool, normalize


def test_last_token_pool_is_the_same_for_left_and_right_padding():
    states = torch.randn(1, 3, 4)
    right = torch.cat([states, torch.randn(1, 2, 4)], dim=1)
    left = torch.cat([torch.randn(1, 2, 4), states], dim=1)
    pooled_right = last_token_pool(right, torch.tensor([[1, 1, 1, 0, 0]]))
    pooled_left = last_token_pool(left, torch.tensor([[0, 0, 1, 1, 1]]))
    assert torch.equal(pooled_right, states[:, 2]) and torch.equal(pooled_left, states[:, 2])


def test_masked_mean_pool_averages_the_marked_states_only():
    states = torch.arange(12, dtype=torch.float32).view(1, 4, 3)
    pooled = masked_mean_pool(states, torch.tensor([[0, 1, 0, 1]]))
    assert torch.allclose(pooled, (states[0, 1] + states[0, 3]) / 2)
    one = masked_mean_pool(states, torch.tensor([[0, 0, 1, 0]]))
    assert torch.equal(one[0], states[0, 2])


def test_gather_positions_keeps_order():
    states = torch.arange(12, dtype=torch.float32).view(2, 3, 2)
    gathered = gather_positions(states, torch.tensor([[1, 0, 1], [0, 1, 1]]), 2)
    assert gathered.tolist() == [[[0, 1], [4, 5]], [[8, 9], [10, 11]]]


def test_normalize_gives_unit_rows():
    assert torch.allclose(normalize(torch.randn(5, 7)).norm(dim=-1), torch.ones(5))
