"""Training examples for LLaRA adaptation (EBAE + EBAR) from unlabeled text, streamed and deterministic.

An example is ``(text_ids, next_ids)``: the input span, whose own tokens are the EBAE targets, and the span
that follows it in the same document, whose tokens are the EBAR targets (empty at a document's end: such an
example trains EBAE only, so a one-sentence document still contributes).

Input formats (``data_format``; ``auto`` picks by file name and first record):

``corpus``    anything :func:`llara_cli.data.corpus.iter_documents` reads: Pyserini/BEIR jsonl
              (``{"_id"|"id"|"docid", "title"?, "text"|"contents"}``), a BEIR directory, ``id<TAB>text`` tsv.
``text``      plain text, one document per line (blank lines are skipped).
``released``  the authors' pretraining jsonl (FlagEmbedding ``research/LLARA/data/pretrain``):
              ``{"input": str, "output_summarize": str, "output_predict": str}``; ``input`` is the text,
              ``output_predict`` the next span. ``output_summarize`` is not read: EBAE targets are always the
              input's own tokens (in the released data it repeats ``input``). Stop words are removed from
              the targets only when asked (``--remove-stop-words``, :mod:`llara_cli.data.stopwords`).
``native``    llara's own jsonl, one ready-made example a line: ``{"text": str, "next": str | null}``;
              a missing, null or empty ``next`` makes an EBAE-only example.

Auto-detection: a directory is a BEIR ``corpus``; ``*.jsonl`` / ``*.json`` (optionally ``.gz``) is ``released``
when its first record has ``output_predict``, ``native`` when it has ``next``, else ``corpus``; ``*.tsv`` is a
``corpus``; ``*.txt`` is a ``corpus`` when its first line looks like ``id<TAB>text``, else ``text``; any other
file is ``text``.

Documents (``corpus`` and ``text``) are tokenized once, cut at sentence boundaries (``.``, ``!`` or ``?``
followed by white space, and line breaks), and consecutive sentences are packed into spans of at most
``span_tokens`` tokens (a longer sentence is cut into ``span_tokens`` pieces): the fewest spans that fit, but
at least two for a document of two sentences or more, cut where they come out about equally long
(:func:`pack_spans`). Each span is the input of one example and the next span of the same document is its
``next``. ``released`` and ``native`` texts are cut to
``span_tokens`` tokens each.

:class:`AdaptationStream` streams the examples (the corpus is never held in memory), shuffles them with a
bounded buffer seeded by ``(seed, pass)``, caps them at ``max_examples`` (the first examples in file order,
then shuffled), and repeats passes forever so a trainer stops on its step count, never on the data. The
stream does not depend on the number of processes: Accelerate's ``IterableDatasetShard`` (which the HF
Trainer applies) hands rank ``r`` the ``r``-th ``batch_size`` slice of every round of ``batch_size x world``
examples, and DataLoader workers take whole rounds in turn (:func:`shard_rounds`), so batch ``j`` of rank ``r``
is the same examples whatever the worker count, and one process with batch ``2B`` sees exactly the
concatenation of what two processes with batch ``B`` see. (Each worker reads and tokenizes the whole stream
to stay exact; tokenization is cheap next to a training step.)
"""
from __future__ import annotations

import logging
import math
import random
import re
from array import array
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from enum import Enum
from itertools import count, islice
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from llara_cli.data.corpus import iter_documents
from llara_cli.errors import UsageError
from llara_cli.storage.files import iter_jsonl, iter_lines

logger = logging.getLogger(__name__)

DEFAULT_SHUFFLE_BUFFER = 10_000
TOKENIZE_BATCH = 64  # documents tokenized per call (fast tokenizers batch in Rust)
JSONL_SUFFIXES = (".jsonl", ".json")
TSV_LINE = re.compile(r"^[^\t\s]+\t")
# A sentence ends at . ! or ? (optionally followed by closing quotes/brackets) and white space, or at a line break.
SENTENCE_BREAK = re.compile(r"[.!?][\"'\u201d\u2019)\]]*\s+|\s*\n\s*")
RELEASED_FIELDS = ("input", "output_predict")
NATIVE_TEXT, NATIVE_NEXT = "text", "next"

T = TypeVar("T")


class DataFormat(str, Enum):
    AUTO = "auto"
    CORPUS = "corpus"
    TEXT = "text"
    RELEASED = "released"
    NATIVE = "native"


class AdaptationExample(NamedTuple):
    """One training example; a plain ``(text_ids, next_ids)`` tuple for ``collate_adaptation``."""

    text_ids: list[int]  # the input span: EBAE targets are these tokens
    next_ids: list[int]  # the following span: EBAR targets; empty at the end of a document


# ------------------------------------------------------------------------------------------------ pure helpers


def sentence_starts(text: str) -> list[int]:
    """Character offsets where sentences start (always ``0`` first, never ``len(text)``)."""
    starts = [0]
    for match in SENTENCE_BREAK.finditer(text):
        if 0 < match.end() < len(text) and match.end() > starts[-1]:
            starts.append(match.end())
    return starts


def segment_bounds(token_ends: Sequence[int], starts: Sequence[int]) -> list[tuple[int, int]]:
    """Token ranges ``[start, end)`` of the sentences beginning at character offsets ``starts``.

    A token belongs to the sentence holding its last character (``end - 1``), so a word-piece with a leading
    space (``" The"``) opens the new sentence and a trailing ``"."`` closes the old one.
    """
    boundaries = sorted({0, *(bisect_right(token_ends, start) for start in starts[1:])} | {len(token_ends)})
    return [(begin, end) for begin, end in zip(boundaries, boundaries[1:]) if end > begin]


def pack_spans(segments: Sequence[tuple[int, int]], budget: int) -> list[tuple[int, int]]:
    """Join consecutive segments (contiguous token ranges) into spans of at most ``budget`` tokens.

    A segment longer than ``budget`` is first cut into ``budget``-sized pieces. The document then gets the
    fewest spans that fit, but at least two when it has two pieces or more (so it trains EBAR as well as
    EBAE), and the cuts fall where the spans come out about equally long: a piece starts a new span when it
    would overflow ``budget`` or when its middle lies past the next multiple of ``total / n_spans``.
    """
    if budget <= 0:
        raise ValueError(f"budget must be positive, got {budget}")
    pieces = [(start, min(start + budget, end)) for begin, end in segments for start in range(begin, end, budget)]
    if not pieces:
        return []
    total = pieces[-1][1] - pieces[0][0]
    n_spans = max(min(2, len(pieces)), math.ceil(total / budget))
    target = total / n_spans
    origin = pieces[0][0]
    spans: list[tuple[int, int]] = []
    span_start, span_end = pieces[0]
    next_cut = target  # the next ideal cut, as an offset from the document start
    for begin, end in pieces[1:]:
        middle = (begin + end) / 2 - origin
        if end - span_start > budget or middle > next_cut:
            spans.append((span_start, span_end))
            span_start = begin
            next_cut = (math.floor((begin - origin) / target) + 1) * target
        span_end = end
    spans.append((span_start, span_end))
    return spans


def document_examples(token_ids: Sequence[int], spans: Sequence[tuple[int, int]]) -> Iterator[AdaptationExample]:
    """``(span_i, span_{i+1})`` for every span of one document; the last span's ``next`` is empty."""
    pieces = [list(token_ids[begin:end]) for begin, end in spans]
    for index, piece in enumerate(pieces):
        yield AdaptationExample(piece, pieces[index + 1] if index + 1 < len(pieces) else [])


def shard_rounds(items: Iterable[T], round_size: int, num_shards: int, index: int) -> Iterator[T]:
    """Whole rounds of ``round_size`` consecutive items, round ``k`` to shard ``k % num_shards``.

    DataLoader workers yield batches in turn, so sharding by whole rounds keeps the merged order.
    """
    if num_shards <= 1:
        yield from items
        return
    for position, item in enumerate(items):
        if (position // round_size) % num_shards == index:
            yield item


def buffered_shuffle(items: Iterable[T], buffer_size: int, rng: random.Random) -> Iterator[T]:
    """A streaming shuffle with a bounded buffer: deterministic for a given ``rng`` state."""
    if buffer_size <= 1:
        yield from items
        return
    buffer: list[T] = []
    for item in items:
        if len(buffer) < buffer_size:
            buffer.append(item)
            continue
        slot = rng.randrange(buffer_size)
        yield buffer[slot]
        buffer[slot] = item
    rng.shuffle(buffer)
    yield from buffer


# ------------------------------------------------------------------------------------------------ format detection


def _bare_suffix(path: Path) -> str:
    name = path.name.lower()
    name = name[:-3] if name.endswith(".gz") else name
    return Path(name).suffix


def detect_format(path: str | Path, data_format: str | DataFormat = DataFormat.AUTO) -> DataFormat:
    """Resolve ``auto`` to a concrete format (see the module docstring); a missing path is a UsageError."""
    path = Path(path)
    try:
        chosen = DataFormat(data_format)
    except ValueError:
        known = ", ".join(item.value for item in DataFormat)
        raise UsageError(f"unknown data format {data_format!r}: choose one of {known}") from None
    if not path.exists():
        raise UsageError(f"{path}: no such file or directory")
    if chosen is not DataFormat.AUTO:
        return chosen
    if path.is_dir():
        return DataFormat.CORPUS
    suffix = _bare_suffix(path)
    if suffix in JSONL_SUFFIXES:
        first = next(iter_jsonl(path), None)
        if first is None:
            return DataFormat.CORPUS
        record = first[1]
        if "output_predict" in record:
            return DataFormat.RELEASED
        if NATIVE_NEXT in record and "_id" not in record and "id" not in record:
            return DataFormat.NATIVE
        return DataFormat.CORPUS
    if suffix == ".tsv":
        return DataFormat.CORPUS
    if suffix == ".txt":
        for _, line in iter_lines(path):
            if line.strip():
                return DataFormat.CORPUS if TSV_LINE.match(line) else DataFormat.TEXT
        return DataFormat.TEXT
    return DataFormat.TEXT


# ------------------------------------------------------------------------------------------------ readers


def _iter_document_texts(path: Path, data_format: DataFormat) -> Iterator[str]:
    if data_format is DataFormat.CORPUS:
        for document in iter_documents(path):
            yield document.text
    else:
        for _, line in iter_lines(path):
            if line.strip():
                yield line


def _string_field(record: dict[str, Any], field: str, path: Path, line_number: int, *, optional: bool) -> str:
    value = record.get(field)
    if value is None:
        if optional:
            return ""
        raise UsageError(f"{path}:{line_number}: no {field!r} field")
    if not isinstance(value, str):
        raise UsageError(f"{path}:{line_number}: {field!r} must be a string, got {type(value).__name__}")
    return value


def _iter_pairs(path: Path, data_format: DataFormat) -> Iterator[tuple[str, str]]:
    """``(text, next)`` strings of the released or native jsonl."""
    for line_number, record in iter_jsonl(path):
        if data_format is DataFormat.RELEASED:
            text = _string_field(record, "input", path, line_number, optional=False)
            following = _string_field(record, "output_predict", path, line_number, optional=True)
        else:
            text = _string_field(record, NATIVE_TEXT, path, line_number, optional=False)
            following = _string_field(record, NATIVE_NEXT, path, line_number, optional=True)
        yield text, following


def _batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


class ExampleReader:
    """One pass over a source in file order: documents are split into spans, or pairs read as they are."""

    def __init__(self, path: str | Path, tokenizer, *, span_tokens: int,
                 data_format: str | DataFormat = DataFormat.AUTO) -> None:
        if span_tokens <= 0:
            raise UsageError(f"the span length must be positive, got {span_tokens}")
        self.path = Path(path)
        self.tokenizer = tokenizer
        self.span_tokens = span_tokens
        self.data_format = detect_format(self.path, data_format)

    def __iter__(self) -> Iterator[AdaptationExample]:
        if self.data_format in (DataFormat.RELEASED, DataFormat.NATIVE):
            yield from self._pair_examples()
        else:
            yield from self._document_examples()

    def _encode(self, texts: list[str]) -> list[list[int]]:
        return [list(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def _pair_examples(self) -> Iterator[AdaptationExample]:
        for batch in _batched(_iter_pairs(self.path, self.data_format), TOKENIZE_BATCH):
            texts = self._encode([text for text, _ in batch])
            followers = self._encode([following or "" for _, following in batch])
            for text_ids, next_ids in zip(texts, followers):
                if text_ids:
                    yield AdaptationExample(text_ids[:self.span_tokens], next_ids[:self.span_tokens])

    def _document_examples(self) -> Iterator[AdaptationExample]:
        fast = bool(getattr(self.tokenizer, "is_fast", False))
        for batch in _batched(_iter_document_texts(self.path, self.data_format), TOKENIZE_BATCH):
            if fast:
                encoded = self.tokenizer(batch, add_special_tokens=False, return_offsets_mapping=True)
                for text, ids, offsets in zip(batch, encoded["input_ids"], encoded["offset_mapping"]):
                    segments = segment_bounds([end for _, end in offsets], sentence_starts(text))
                    yield from document_examples(ids, pack_spans(segments, self.span_tokens))
            else:
                for text in batch:
                    yield from self._slow_document(text)

    def _slow_document(self, text: str) -> Iterator[AdaptationExample]:
        """Tokenizers without offsets: each sentence is tokenized on its own (close, not identical, ids)."""
        starts = sentence_starts(text)
        sentences = [text[begin:end] for begin, end in zip(starts, [*starts[1:], len(text)])]
        ids: list[int] = []
        segments = []
        for sentence_ids in self._encode(sentences):
            segments.append((len(ids), len(ids) + len(sentence_ids)))
            ids.extend(sentence_ids)
        yield from document_examples(ids, pack_spans([s for s in segments if s[1] > s[0]], self.span_tokens))


# ------------------------------------------------------------------------------------------------ dataset


def _pass_rng(seed: int, pass_index: int) -> random.Random:
    return random.Random(f"llara-adapt:{seed}:{pass_index}")  # str seeds hash with sha512: stable across runs


def _compact(example: AdaptationExample) -> tuple[array, array]:
    return array("i", example.text_ids), array("i", example.next_ids)  # ~8x smaller than lists of ints


def _expand(item: tuple[array, array]) -> AdaptationExample:
    return AdaptationExample(item[0].tolist(), item[1].tolist())


class AdaptationStream:
    """The deterministic example stream used for training (plain Python: no torch).

    ``round_size`` is ``per-device batch x world size``: DataLoader workers take whole rounds in turn (ranks are
    split inside each round by Accelerate; see :class:`llara_cli.training.adaptation_dataset.AdaptationDataset`,
    the ``torch`` dataset around this stream). ``repeat`` makes the stream endless (pass ``k`` reshuffled with
    ``(seed, k)``); a pass that yields nothing raises a UsageError instead of spinning.
    """

    def __init__(self, path: str | Path, tokenizer, *, span_tokens: int,
                 data_format: str | DataFormat = DataFormat.AUTO, seed: int = 0,
                 shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER, max_examples: int | None = None,
                 round_size: int = 1, repeat: bool = True) -> None:
        super().__init__()
        if max_examples is not None and max_examples <= 0:
            raise UsageError(f"--max-examples must be positive, got {max_examples}")
        self.reader = ExampleReader(path, tokenizer, span_tokens=span_tokens, data_format=data_format)
        self.seed = seed
        self.shuffle_buffer = shuffle_buffer
        self.max_examples = max_examples
        self.round_size = max(1, round_size)
        self.repeat = repeat

    @property
    def data_format(self) -> DataFormat:
        return self.reader.data_format

    def set_epoch(self, epoch: int) -> None:
        """Called by Accelerate/Trainer; the stream is endless and reshuffles each pass by itself."""

    def examples(self) -> Iterator[AdaptationExample]:
        """One pass in file order, capped at ``max_examples``."""
        return islice(iter(self.reader), self.max_examples)

    def check_not_empty(self) -> None:
        """Fail early, naming the source, when no example can be built from it."""
        if next(self.examples(), None) is None:
            raise UsageError(self._empty_message())

    def _empty_message(self) -> str:
        return (f"{self.reader.path}: no training examples ({self.data_format.value} format): "
                "the corpus is empty or none of its texts has any token")

    def pass_examples(self, pass_index: int) -> Iterator[AdaptationExample]:
        """Pass ``pass_index``: the capped examples shuffled with the ``(seed, pass_index)`` generator."""
        compact = (_compact(example) for example in self.examples())
        for item in buffered_shuffle(compact, self.shuffle_buffer, _pass_rng(self.seed, pass_index)):
            yield _expand(item)

    def stream(self) -> Iterator[AdaptationExample]:
        """All passes one after the other (or one pass when ``repeat`` is off)."""
        for pass_index in count() if self.repeat else range(1):
            produced = 0
            for example in self.pass_examples(pass_index):
                produced += 1
                yield example
            if produced == 0:
                raise UsageError(self._empty_message())

    def __iter__(self) -> Iterator[AdaptationExample]:
        return self.stream()


__all__ = [
    "AdaptationExample", "AdaptationStream", "DataFormat", "ExampleReader",
    "buffered_shuffle", "detect_format", "document_examples", "pack_spans", "segment_bounds",
    "sentence_starts", "shard_rounds",
]
