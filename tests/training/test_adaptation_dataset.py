"""The torch dataset around the adaptation stream: DataLoader workers and Accelerate ranks keep its batches."""
from __future__ import annotations

import pytest
from torch.utils.data import DataLoader

from llara_cli.training.adaptation_dataset import AdaptationDataset
from tests.conftest import build_tiny_tokenizer
from tests.data.test_adaptation import take


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


def test_dataloader_workers_keep_the_single_process_order(tokenizer, corpus):
    collate = lambda examples: [tuple(example.text_ids) for example in examples]  # noqa: E731
    dataset = AdaptationDataset(corpus, tokenizer, span_tokens=12, seed=5, round_size=3)
    batches = lambda workers: take(DataLoader(dataset, batch_size=3, num_workers=workers,  # noqa: E731
                                              collate_fn=collate), 8)
    assert batches(2) == batches(0)


def test_two_ranks_see_the_single_process_batch_split_in_two(tokenizer, corpus):
    from accelerate.data_loader import IterableDatasetShard

    dataset = AdaptationDataset(corpus, tokenizer, span_tokens=12, seed=5, round_size=4)
    ranks = [take(IterableDatasetShard(dataset, batch_size=2, num_processes=2, process_index=rank), 10)
             for rank in range(2)]
    single = take(dataset, 20)
    for step in range(5):
        assert single[4 * step:4 * step + 4] == ranks[0][2 * step:2 * step + 2] + ranks[1][2 * step:2 * step + 2]
