"""``QueryBatcher``: concurrent dense queries micro-batched into one forward pass.

Requests put ``(text, k)`` on a queue and get a :class:`concurrent.futures.Future`; one worker thread takes the
first waiting query, waits up to ``wait_s`` for more (at most ``max_batch``), encodes them together (one forward
pass per ``searcher.batch_size`` queries, length-sorted) and searches the index once per distinct ``k``. While
a batch runs, new queries queue up and form the next one, so under load batches fill without waiting, and a
lone query waits at most ``wait_s``. ``max_batch=1`` is one query at a time. A query whose caller gave up
(cancelled future, e.g. a timeout) is skipped; :meth:`close` finishes every query already queued.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections import defaultdict
from concurrent.futures import Future
from dataclasses import dataclass

logger = logging.getLogger(__name__)

_STOP = object()


@dataclass
class _Item:
    text: str
    k: int
    future: Future


@dataclass
class BatchStats:
    batches: int = 0
    queries: int = 0
    largest: int = 0

    def to_dict(self) -> dict:
        mean = self.queries / self.batches if self.batches else 0.0
        return {"batches": self.batches, "queries": self.queries, "largest_batch": self.largest,
                "mean_batch": round(mean, 2)}


class QueryBatcher:
    """Micro-batches ``DenseSearcher`` queries (its model loaded once) on one worker thread."""

    def __init__(self, searcher, *, max_batch: int = 32, wait_s: float = 0.002, name: str = "dense") -> None:
        if max_batch < 1 or wait_s < 0:
            raise ValueError(f"max_batch must be >= 1 and wait_s >= 0, got {max_batch}, {wait_s}")
        self.searcher, self.max_batch, self.wait_s = searcher, max_batch, wait_s
        self.stats = BatchStats()
        self._queue: queue.Queue = queue.Queue()
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"llara-batcher-{name}", daemon=True)
        self._thread.start()

    def submit(self, text: str, k: int) -> Future:
        """Queue one query; the future's result is ``[(doc_id, score), ...]`` best first."""
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the query batcher is closed")
            self._queue.put(_Item(text, k, future))
        return future

    def close(self, wait: bool = True) -> None:
        """Stop taking queries; the worker finishes those already queued, then ends."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        if wait:
            self._thread.join()

    def _collect(self, first: _Item) -> tuple[list[_Item], bool]:
        batch, stopping = [first], False
        deadline = time.monotonic() + self.wait_s
        while len(batch) < self.max_batch:
            try:  # take what is already waiting at once; then wait out the window for more
                item = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if item is _STOP:
                stopping = True
                break
            batch.append(item)
        return batch, stopping

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            batch, stopping = self._collect(first)
            self._answer([item for item in batch if item.future.set_running_or_notify_cancel()])

    def _answer(self, batch: list[_Item]) -> None:
        if not batch:
            return
        try:
            vectors = self.searcher.encode_queries([item.text for item in batch])  # (batch, dim)
            by_k: dict[int, list[int]] = defaultdict(list)
            for position, item in enumerate(batch):
                by_k[item.k].append(position)
            for k, positions in by_k.items():  # one search per distinct k: the same hits as searching with k
                ids = [str(position) for position in positions]
                found = self.searcher.search_vectors(vectors[positions], ids, k=k)
                for position, query_id in zip(positions, ids):
                    batch[position].future.set_result(found[query_id])
        except Exception as error:
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(error)
        self.stats.batches += 1
        self.stats.queries += len(batch)
        self.stats.largest = max(self.stats.largest, len(batch))
