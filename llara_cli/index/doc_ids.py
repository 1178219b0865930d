"""The document ids of an open index, in row order, held compactly.

A Python list of ``n`` short strings costs ~65 bytes an id (the string object and its pointer): 0.07 GB at 1M
documents, 0.57 GB for MS MARCO's 8.8M -- as much as a binary index of 128-d codes, and a third of what a
1M x 1024 binary index needs in all (``benchmarks/scale.py``). :class:`DocIds` keeps the ``docid`` file's bytes as
one buffer and the start of each id in an integer array (~13 bytes an id for MS MARCO's ids); an id becomes a
``str`` only when a result names it.

:func:`read_doc_ids` takes a fast path for the usual file -- ASCII, one id a line, every line ending in ``\\n``,
no blank line, no whitespace or control character, no repeated id -- validated by whole-buffer numpy checks
(uniqueness on a fixed-width copy, built in chunks, when the ids' lengths are even enough for it to stay small).
Any other file (non-ASCII ids, ids of very uneven length, or a fault) goes through the strict reader
:func:`llara_cli.encode.embedding_store.read_ids`, which names the file and line of a fault, and is then packed.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import overload

import numpy as np

from llara_cli.encode.embedding_store import read_ids
from llara_cli.runtime.memory import release_free_memory

__all__ = ["DocIds", "read_doc_ids"]

NEWLINE = ord("\n")
FIRST_VISIBLE_ASCII, LAST_VISIBLE_ASCII = 0x21, 0x7E  # "!" .. "~": no space, tab, CR or control character
ID_FILE_BYTES = bytes([NEWLINE, *range(FIRST_VISIBLE_ASCII, LAST_VISIBLE_ASCII + 1)])
INT32_LIMIT = 2 ** 31 - 1
FIXED_WIDTH_MAX_GROWTH = 4  # the uniqueness copy may be at most this many times the file's size
FIXED_WIDTH_CHUNK_ROWS = 1 << 16  # rows copied into the fixed-width array at a time


class DocIds(Sequence[str]):
    """Row -> document id over one bytes buffer (``id\\n`` per row) and the start offset of each row."""

    __slots__ = ("_buffer", "_starts")

    def __init__(self, buffer: bytes, starts: np.ndarray) -> None:
        # starts: (n + 1,) the first byte of each id, then len(buffer); row i is buffer[starts[i]:starts[i+1] - 1]
        self._buffer = buffer
        self._starts = starts

    @classmethod
    def from_strings(cls, ids: Sequence[str]) -> DocIds:
        """Pack ids that contain no newline (the strict reader's output)."""
        encoded = [doc_id.encode("utf-8") + b"\n" for doc_id in ids]
        lengths = np.fromiter((len(item) for item in encoded), dtype=np.int64, count=len(encoded))  # (n,)
        starts = np.concatenate([[0], np.cumsum(lengths)])  # (n + 1,)
        return cls(b"".join(encoded), _narrow(starts))

    def __len__(self) -> int:
        return len(self._starts) - 1

    @overload
    def __getitem__(self, row: int) -> str: ...

    @overload
    def __getitem__(self, row: slice) -> list[str]: ...

    def __getitem__(self, row):
        if isinstance(row, slice):
            return [self[position] for position in range(*row.indices(len(self)))]
        count = len(self)
        if row < 0:
            row += count
        if not 0 <= row < count:
            raise IndexError(f"row {row} outside {count} document ids")
        return self._buffer[int(self._starts[row]):int(self._starts[row + 1]) - 1].decode("utf-8")

    def __iter__(self) -> Iterator[str]:
        return iter(self._buffer.decode("utf-8").split("\n")[:-1])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, DocIds):
            return self._buffer == other._buffer
        if isinstance(other, Sequence) and not isinstance(other, str):
            return len(self) == len(other) and all(mine == theirs for mine, theirs in zip(self, other))
        return NotImplemented

    __hash__ = None  # mutable-looking sequence semantics, as list

    def __repr__(self) -> str:
        return f"DocIds({len(self)} ids, {self.nbytes} bytes)"

    @property
    def nbytes(self) -> int:
        """Bytes held: the buffer and the offsets."""
        return len(self._buffer) + self._starts.nbytes


def read_doc_ids(path: str | Path) -> DocIds:
    """The ids of an index's ``docid`` file (checked as :func:`~llara_cli.encode.embedding_store.read_ids` does).

    The checks' temporary arrays (several times the file's size) are freed and handed back to the OS before
    returning (glibc keeps freed blocks under its raised mmap threshold otherwise): open the ids before the
    index, and the search's peak memory is the index plus the packed ids, not plus the checks.
    """
    path = Path(path)
    buffer = path.read_bytes()
    starts = _fast_starts(buffer)
    doc_ids = DocIds(buffer, starts) if starts is not None else DocIds.from_strings(read_ids(path))
    release_free_memory()
    return doc_ids


def _fast_starts(buffer: bytes) -> np.ndarray | None:
    """Row offsets of a plain ASCII id file of unique ids, or None when anything needs the strict reader's eye."""
    if not buffer or buffer[-1] != NEWLINE or buffer[0] == NEWLINE or b"\n\n" in buffer:  # no blank line
        return None
    if buffer.translate(None, ID_FILE_BYTES):  # a byte outside visible ASCII and the newline
        return None
    codes = np.frombuffer(buffer, dtype=np.uint8)  # (bytes,)
    starts = _narrow(np.concatenate([[0], np.flatnonzero(codes == NEWLINE) + 1]))  # (n + 1,)
    if not _all_unique(codes, starts, np.diff(starts) - 1):
        return None
    return starts


def _all_unique(codes: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> bool:
    """Whether the ids are unique, by sorting a fixed-width copy (False also when that copy would be too big:
    the strict reader decides then)."""
    count, width = len(lengths), int(lengths.max())
    if count * width > FIXED_WIDTH_MAX_GROWTH * len(codes):
        return False
    fixed = np.zeros((count, width), dtype=np.uint8)  # (n, width) ids, NUL-padded
    columns = np.arange(width)  # (width,)
    firsts = starts[:-1]  # (n,) each id's first byte
    for first in range(0, count, FIXED_WIDTH_CHUNK_ROWS):
        rows = slice(first, first + FIXED_WIDTH_CHUNK_ROWS)
        present = columns[None, :] < lengths[rows, None]  # (chunk, width)
        sources = firsts[rows, None] + columns[None, :]  # (chunk, width) byte positions
        fixed[rows][present] = codes[sources[present]]
    return len(np.unique(fixed.view(f"S{width}").ravel())) == count


def _narrow(starts: np.ndarray) -> np.ndarray:
    return starts.astype(np.int32 if starts[-1] <= INT32_LIMIT else np.int64)
