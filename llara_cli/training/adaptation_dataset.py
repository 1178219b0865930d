"""The adaptation example stream as the ``torch`` ``IterableDataset`` the HF Trainer and DataLoader take.

The stream itself (formats, spans, shuffling) is :class:`llara_cli.data.adaptation.AdaptationStream`, which
imports no torch; this class adds what only torch knows about: DataLoader workers, which take whole rounds of
``round_size`` examples in turn (:func:`llara_cli.data.adaptation.shard_rounds`), so a batch is the same
examples whatever the worker count.
"""
from __future__ import annotations

from collections.abc import Iterator

from torch.utils.data import IterableDataset, get_worker_info

from llara_cli.data.adaptation import AdaptationExample, AdaptationStream, shard_rounds


class AdaptationDataset(AdaptationStream, IterableDataset):
    """:class:`AdaptationStream` as a ``torch.utils.data.IterableDataset`` (same constructor)."""

    def __iter__(self) -> Iterator[AdaptationExample]:
        worker = get_worker_info()
        if worker is None:
            return self.stream()
        return shard_rounds(self.stream(), self.round_size, worker.num_workers, worker.id)
