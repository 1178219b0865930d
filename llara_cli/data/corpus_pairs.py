"""Training pairs a corpus provides by itself, without any label: the unsupervised data of ``llara finetune
--pairs-from corpus``.

Each usable document gives one *pseudo-query* and its positive, the document (``doc_id``):

- ``title``: the document's title as the query, its body (the title removed where the body repeats it, as
  Cranfield's does) as the positive -- where the title has at least :data:`MIN_TITLE_WORDS` words and the body
  at least :data:`MIN_BODY_WORDS`;
- ``crops``: two independent random spans of the document's words (Contriever's independent cropping,
  Izacard et al. 2022), each :data:`CROP_RATIO` of the document's length, at least :data:`MIN_CROP_WORDS` words;
- ``auto`` (the default): ``title`` for each document that has a usable title and body, ``crops`` for the others.

The pseudo-query's id is its document's id, so a run of the pseudo-queries over the corpus mines hard negatives
with the ordinary mining (:func:`llara_cli.data.finetune.mine_negatives`; the document itself is the positive).
Deterministic given the seed (per document, independent of the others).
"""
from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from llara_cli.data.finetune import Passage, TrainingData, TrainingExample
from llara_cli.errors import UsageError

__all__ = ["CROP_RATIO", "PairSource", "SourceDocument", "corpus_pairs", "document_pair", "iter_source_documents"]

logger = logging.getLogger(__name__)

MIN_TITLE_WORDS = 3
MIN_BODY_WORDS = 20
MIN_CROP_WORDS = 8
CROP_RATIO = (0.1, 0.5)  # Contriever's span lengths, as a share of the document


class PairSource(str, Enum):
    """Where a document's pseudo-query comes from."""

    AUTO = "auto"
    TITLE = "title"
    CROPS = "crops"


def parse_pair_source(value: str | PairSource) -> PairSource:
    try:
        return PairSource(str(value.value if isinstance(value, PairSource) else value).lower())
    except ValueError:
        raise UsageError(f"unknown pair source {value!r}: choose one of "
                         f"{', '.join(source.value for source in PairSource)}") from None


@dataclass(frozen=True)
class SourceDocument:
    doc_id: str
    title: str
    body: str


def iter_source_documents(path: str | Path) -> Iterator[SourceDocument]:
    """A corpus's documents with title and body apart (jsonl: ``title``/``text``; other formats: no titles)."""
    from llara_cli.data.corpus import iter_documents, resolve_beir_file

    path = resolve_beir_file(path, "corpus.jsonl")
    if path.suffix == ".jsonl" or path.name.endswith(".jsonl.gz"):
        from llara_cli.storage.files import iter_jsonl

        for line_number, record in iter_jsonl(path):
            doc_id = record.get("_id", record.get("id", record.get("docid")))
            if doc_id is None:
                raise UsageError(f"{path}:{line_number}: a document has no _id")
            title = record.get("title") or ""
            body = record.get("text", record.get("contents", "")) or ""
            if not isinstance(title, str) or not isinstance(body, str):
                raise UsageError(f"{path}:{line_number}: text and title must be strings")
            yield SourceDocument(str(doc_id), title.strip(), body.strip())
        return
    for document in iter_documents(path):
        yield SourceDocument(document.doc_id, "", document.text)


def _body_without_title(title: str, body: str) -> str:
    """The body, minus the title where the body starts with it (Cranfield repeats its titles)."""
    if title and body.lower().startswith(title.lower()):
        return body[len(title):].strip(" .:-\n\t") or ""
    return body


def _crop(words: list[str], rng: random.Random) -> str:
    low, high = CROP_RATIO
    length = max(MIN_CROP_WORDS, round(len(words) * rng.uniform(low, high)))
    length = min(length, len(words))
    start = rng.randint(0, len(words) - length)
    return " ".join(words[start:start + length])


def document_pair(document: SourceDocument, source: PairSource, seed: int) -> TrainingExample | None:
    """The pseudo-query and positive of one document, or None when it has too little text for ``source``."""
    body = _body_without_title(document.title, document.body)
    if source is not PairSource.CROPS and len(document.title.split()) >= MIN_TITLE_WORDS \
            and len(body.split()) >= MIN_BODY_WORDS:
        return TrainingExample(document.doc_id, document.title, (Passage(document.doc_id, body),), ())
    if source is PairSource.TITLE:
        return None
    words = " ".join(part for part in (document.title, body) if part).split()
    if len(words) < 2 * MIN_CROP_WORDS:
        return None
    rng = random.Random(f"{seed}:{document.doc_id}")
    return TrainingExample(document.doc_id, _crop(words, rng), (Passage(document.doc_id, _crop(words, rng)),), ())


def corpus_pairs(corpus: str | Path, *, source: PairSource | str = PairSource.AUTO, seed: int = 42,
                 max_pairs: int | None = None) -> TrainingData:
    """One pseudo-query per usable document of ``corpus`` (the first ``max_pairs`` of them), no negatives yet."""
    source = parse_pair_source(source)
    examples, skipped, titled = [], 0, 0
    for document in iter_source_documents(corpus):
        example = document_pair(document, source, seed)
        if example is None:
            skipped += 1
            continue
        titled += int(example.query == document.title)
        examples.append(example)
        if max_pairs is not None and len(examples) >= max_pairs:
            break
    if not examples:
        raise UsageError(f"{corpus}: no document gives a {source.value} pair (too short, or no titles)")
    data = TrainingData(examples, source=f"{corpus} ({source.value} pairs)")
    data.stats = {"queries": len(examples), "title_pairs": titled, "crop_pairs": len(examples) - titled,
                  "documents_skipped": skipped, "negatives": 0}
    logger.info("%d corpus pairs (%d title -> body, %d crops); %d documents too short", len(examples), titled,
                len(examples) - titled, skipped)
    return data
