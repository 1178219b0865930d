"""Finetuning data: training files of ``{query, pos, neg}`` groups, and building them from a collection and a run.

A training file is jsonl, one query a line, in either of the two common layouts (ids are optional)::

    {"query_id": "q1", "query": "...", "pos": ["text", ...], "neg": ["text", ...],      released LLaRA / FlagEmbedding
     "pos_ids": ["d1", ...], "neg_ids": ["d7", ...]}
    {"query_id": "q1", "query": "...", "positive_passages": [{"docid": "d1", "title": "...", "text": "..."}],
     "negative_passages": [...]}                                                         Tevatron

``pos``/``neg`` items may also be objects like Tevatron's (``docid``/``doc_id``/``_id``/``id``, ``title``,
``text``); a title is joined to the text with one space, as the corpus readers do. ``neg`` may be absent.
An empty ``pos`` is an error (file and line named).

From a collection (BEIR directory, or queries + qrels + corpus), the positives of a query are its judged
documents with relevance >= ``min_relevance``; its hard negatives are *mined* from a TREC run (dense from
``llara search``, or BM25): the run's documents ranked ``skip + 1 .. depth`` that are not positives (judged
non-relevant documents stay eligible), of which ``num_negatives`` are sampled with a per-query random
generator seeded by ``(seed, query_id)``, so the result depends neither on the order of the queries nor on
the other queries. Ranks are positions in the run ordered by ``(-score, doc_id)``.

Errors (UsageError, one line): a positive or negative absent from the corpus, a judged query absent from
the queries file. Queries without any negative left (absent from the run, or all candidates judged
positive) are *kept* here and counted; training drops them with a warning when it needs hard negatives
(:func:`drop_without_negatives`).
"""
from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from llara_cli.data.records import check_no_control
from llara_cli.errors import UsageError
from llara_cli.storage.files import atomic_write, iter_jsonl

logger = logging.getLogger(__name__)

DEFAULT_SPLIT = "train"
DEFAULT_SKIP = 2  # the top ranks of a good run hold many unjudged relevant documents (false negatives)
DEFAULT_DEPTH = 200
DEFAULT_NUM_NEGATIVES = 15
DEFAULT_MIN_RELEVANCE = 1
EXAMPLES_SHOWN = 3

QUERY_FIELDS = ("query", "query_text")
QUERY_ID_FIELDS = ("query_id", "qid", "_id")
POSITIVE_FIELDS = ("pos", "positive_passages")
NEGATIVE_FIELDS = ("neg", "negative_passages")
ID_LIST_FIELDS = {"pos": "pos_ids", "neg": "neg_ids"}
PASSAGE_ID_FIELDS = ("docid", "doc_id", "_id", "id")
PASSAGE_TEXT_FIELDS = ("text", "contents")


class Passage(NamedTuple):
    doc_id: str | None  # None when the training file gives only the text
    text: str


class TrainingExample(NamedTuple):
    """One query with its positives (at least one) and hard negatives (possibly none)."""

    query_id: str | None
    query: str
    positives: tuple[Passage, ...]
    negatives: tuple[Passage, ...]


@dataclass(frozen=True)
class MiningSettings:
    """How hard negatives are drawn from a run: ranks ``skip + 1 .. depth``, ``num_negatives`` of them.

    Score-aware filtering (as sentence-transformers' ``mine_hard_negatives``) drops candidates scored too close
    to the query's positive -- likely unjudged relevant documents: with ``absolute_margin`` a candidate must score
    at most ``positive - absolute_margin``, with ``relative_margin`` at most ``positive * (1 - relative_margin)``
    (both: both). The positive's score is the run's score of the best-scored judged positive; a query whose
    positives the run did not retrieve is not filtered (its positive's score is unknown).
    """

    skip: int = DEFAULT_SKIP
    depth: int = DEFAULT_DEPTH
    num_negatives: int = DEFAULT_NUM_NEGATIVES
    seed: int = 42
    min_relevance: int = DEFAULT_MIN_RELEVANCE
    absolute_margin: float | None = None
    relative_margin: float | None = None

    def validate(self) -> None:
        if self.skip < 0:
            raise UsageError(f"--skip must be >= 0, got {self.skip}")
        if self.depth <= self.skip:
            raise UsageError(f"--depth ({self.depth}) must be greater than --skip ({self.skip})")
        if self.num_negatives < 1:
            raise UsageError(f"--num-negatives must be at least 1, got {self.num_negatives}")
        if self.relative_margin is not None and not 0 <= self.relative_margin < 1:
            raise UsageError(f"--relative-margin must be in [0, 1), got {self.relative_margin}")
        if self.absolute_margin is not None and not math.isfinite(self.absolute_margin):
            raise UsageError(f"--absolute-margin must be a finite number, got {self.absolute_margin}")

    def to_dict(self) -> dict[str, int | float | None]:
        return {"skip": self.skip, "depth": self.depth, "num_negatives": self.num_negatives, "seed": self.seed,
                "min_relevance": self.min_relevance, "absolute_margin": self.absolute_margin,
                "relative_margin": self.relative_margin}

    def score_ceiling(self, positive_score: float | None) -> float | None:
        """The highest score a negative may have given its positive's (None: no filter)."""
        if positive_score is None:
            return None
        ceilings = []
        if self.absolute_margin is not None:
            ceilings.append(positive_score - self.absolute_margin)
        if self.relative_margin is not None:
            ceilings.append(positive_score * (1 - self.relative_margin))
        return min(ceilings) if ceilings else None


@dataclass
class TrainingData:
    """Examples and where they came from; ``stats`` are counts for logs and ``finetune_config.json``."""

    examples: list[TrainingExample]
    source: str
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def without_negatives(self) -> int:
        return sum(1 for example in self.examples if not example.negatives)


# ----------------------------------------------------------------------------------------------- training files


def _first_present(record: Mapping[str, Any], names: Sequence[str]) -> str | None:
    return next((name for name in names if name in record), None)


def _parse_passage(item: Any, where: str) -> Passage:
    if isinstance(item, str):
        return Passage(None, item)
    if not isinstance(item, dict):
        raise UsageError(f"{where}: a passage must be a string or an object, got {type(item).__name__}")
    text_field = _first_present(item, PASSAGE_TEXT_FIELDS)
    if text_field is None:
        raise UsageError(f"{where}: a passage object has no text (expected one of {', '.join(PASSAGE_TEXT_FIELDS)})")
    text, title = item[text_field], item.get("title") or ""
    if not isinstance(text, str) or not isinstance(title, str):
        raise UsageError(f"{where}: passage text and title must be strings")
    id_field = _first_present(item, PASSAGE_ID_FIELDS)
    doc_id = None if id_field is None or item[id_field] is None else str(item[id_field])
    return Passage(doc_id, f"{title} {text}".strip() if title else text)


def _parse_passages(record: Mapping[str, Any], names: Sequence[str], where: str) -> tuple[Passage, ...]:
    name = _first_present(record, names)
    if name is None:
        return ()
    items = record[name]
    if not isinstance(items, list):
        raise UsageError(f"{where}: '{name}' must be a list, got {type(items).__name__}")
    passages = [_parse_passage(item, where) for item in items]
    id_field = ID_LIST_FIELDS.get(name)
    if id_field and id_field in record:
        ids = record[id_field]
        if not isinstance(ids, list) or len(ids) != len(passages):
            raise UsageError(f"{where}: '{id_field}' must be a list as long as '{name}'")
        passages = [Passage(str(doc_id), passage.text) for doc_id, passage in zip(ids, passages)]
    return tuple(passages)


def parse_training_record(record: Mapping[str, Any], where: str) -> TrainingExample:
    """One training line (either layout) -> TrainingExample; ``where`` (``file:line``) prefixes errors."""
    query_field = _first_present(record, QUERY_FIELDS)
    if query_field is None:
        raise UsageError(f"{where}: no query (expected a 'query' field)")
    query = record[query_field]
    if not isinstance(query, str) or not query.strip():
        raise UsageError(f"{where}: the query must be a non-empty string")
    id_field = _first_present(record, QUERY_ID_FIELDS)
    query_id = None if id_field is None or record[id_field] is None else str(record[id_field])
    check_no_control(query_id, where, "query")
    if _first_present(record, POSITIVE_FIELDS) is None:
        raise UsageError(f"{where}: no positives (expected 'pos' or 'positive_passages')")
    positives = _parse_passages(record, POSITIVE_FIELDS, where)
    if not positives:
        raise UsageError(f"{where}: empty 'pos': every query needs at least one positive passage")
    negatives = _parse_passages(record, NEGATIVE_FIELDS, where)
    for passage in (*positives, *negatives):
        check_no_control(passage.doc_id, where, "passage")
    return TrainingExample(query_id, query, positives, negatives)


def read_training_file(path: str | Path) -> list[TrainingExample]:
    """Read a training jsonl (``.gz`` too); malformed lines name file and line; an empty file is an error."""
    examples = [parse_training_record(record, f"{path}:{line_number}") for line_number, record in iter_jsonl(path)]
    if not examples:
        raise UsageError(f"{path}: no training examples")
    return examples


def training_record(example: TrainingExample) -> dict[str, Any]:
    """The line written for an example: the released code's ``{query, pos, neg}`` plus ids when known."""
    record: dict[str, Any] = {}
    if example.query_id is not None:
        record["query_id"] = example.query_id
    record["query"] = example.query
    for name, passages in (("pos", example.positives), ("neg", example.negatives)):
        record[name] = [passage.text for passage in passages]
        if passages and all(passage.doc_id is not None for passage in passages):
            record[ID_LIST_FIELDS[name]] = [passage.doc_id for passage in passages]
    return record


def write_training_file(path: str | Path, examples: Iterable[TrainingExample]) -> int:
    """Atomically write examples as jsonl (``.gz`` compresses); returns how many lines were written."""
    count = 0
    with atomic_write(path) as handle:
        for example in examples:
            handle.write(json.dumps(training_record(example), ensure_ascii=False) + "\n")
            count += 1
    return count


def drop_without_negatives(examples: Sequence[TrainingExample]) -> tuple[list[TrainingExample], int]:
    """``(examples that have hard negatives, how many were dropped)``."""
    kept = [example for example in examples if example.negatives]
    return kept, len(examples) - len(kept)


# ----------------------------------------------------------------------------------------------------- mining


def positives_from_qrels(qrels: Iterable, min_relevance: int = DEFAULT_MIN_RELEVANCE) -> dict[str, list[str]]:
    """``{query_id: [doc_id, ...]}`` of judgements with relevance >= ``min_relevance``, in qrels order."""
    positives: dict[str, list[str]] = {}
    for qrel in qrels:
        if qrel.relevance >= min_relevance:
            positives.setdefault(qrel.query_id, []).append(qrel.doc_id)
    return positives


def _query_rng(seed: int, query_id: str) -> random.Random:
    return random.Random(f"{seed}:{query_id}")  # str seeds hash with sha512: stable across runs and platforms


def mine_negatives(run: Mapping[str, Sequence[tuple[str, float]]], positives: Mapping[str, Iterable[str]],
                   settings: MiningSettings = MiningSettings(), counts: dict[str, int] | None = None,
                   ) -> dict[str, list[str]]:
    """Sample hard negatives for every query of ``positives`` from ``run`` (``{query_id: [(doc_id, score)]}``
    best first, as :func:`llara_cli.data.runs.group_run` returns); the sampled ids keep their run order.

    A query absent from the run, or with no candidate left, maps to ``[]``. Candidates scored above the
    settings' margin to the positive are dropped (:meth:`MiningSettings.score_ceiling`); ``counts``, when given,
    receives ``dropped_by_margin`` (candidates dropped) and ``queries_without_positive_score``.
    """
    counts = {} if counts is None else counts
    counts.update(dropped_by_margin=0, queries_without_positive_score=0)
    settings.validate()
    mined: dict[str, list[str]] = {}
    for query_id, judged in positives.items():
        excluded = set(judged)
        ranked = run.get(query_id, ())
        scores = dict(ranked)
        positive_scores = [scores[doc_id] for doc_id in excluded if doc_id in scores]
        ceiling = settings.score_ceiling(max(positive_scores) if positive_scores else None)
        window = [(doc_id, score) for doc_id, score in ranked[settings.skip:settings.depth] if doc_id not in excluded]
        candidates = [doc_id for doc_id, score in window if ceiling is None or score <= ceiling]
        counts["dropped_by_margin"] += len(window) - len(candidates)
        counts["queries_without_positive_score"] += int(not positive_scores and ranked != ())
        count = min(settings.num_negatives, len(candidates))
        chosen = sorted(_query_rng(settings.seed, query_id).sample(range(len(candidates)), count))
        mined[query_id] = [candidates[index] for index in chosen]
    return mined


def _describe_missing(pairs: Sequence[str], total: int, what: str, source: str | Path) -> str:
    shown = ", ".join(pairs[:EXAMPLES_SHOWN])
    return f"{len(pairs)} {what} missing from {source} (e.g. {shown}) out of {total}"


def build_training_examples(queries: Mapping[str, str], corpus: Mapping[str, str],
                            positives: Mapping[str, Sequence[str]], negatives: Mapping[str, Sequence[str]], *,
                            corpus_source: str | Path = "the corpus",
                            queries_source: str | Path = "the queries") -> list[TrainingExample]:
    """Join ids with their texts; a positive, a negative or a query missing from its source is a UsageError."""
    missing_queries = [query_id for query_id in positives if query_id not in queries]
    if missing_queries:
        raise UsageError(_describe_missing(missing_queries, len(positives), "judged queries are", queries_source))
    for what, ids_by_query in (("positives", positives), ("negatives", negatives)):
        pairs = [(query_id, doc_id) for query_id, doc_ids in ids_by_query.items() for doc_id in doc_ids]
        missing = [f"{query_id}/{doc_id}" for query_id, doc_id in pairs if doc_id not in corpus]  # ids may hold '/'
        if missing:
            raise UsageError(_describe_missing(missing, len(pairs), f"{what} (query/doc) are", corpus_source)
                             + ("; do the qrels belong to this corpus?" if what == "positives"
                                else "; was the run made on this corpus?"))
    return [
        TrainingExample(
            query_id, queries[query_id],
            tuple(Passage(doc_id, corpus[doc_id]) for doc_id in doc_ids),
            tuple(Passage(doc_id, corpus[doc_id]) for doc_id in negatives.get(query_id, ())),
        )
        for query_id, doc_ids in positives.items()
    ]


@dataclass(frozen=True)
class CollectionFiles:
    """The three files a collection-based training set is built from."""

    queries: Path
    qrels: Path
    corpus: Path


def collection_files(train: str | Path | None = None, *, queries: str | Path | None = None,
                     qrels: str | Path | None = None, corpus: str | Path | None = None,
                     split: str = DEFAULT_SPLIT) -> CollectionFiles:
    """Resolve ``train`` (a BEIR directory or a collection name such as ``scifact``) and explicit overrides."""
    from llara_cli.data.collections import resolve_corpus, resolve_qrels, resolve_queries

    if train is None and None in (queries, qrels, corpus):
        raise UsageError("give --train (a training jsonl or a BEIR directory), or all of --queries, --qrels and --corpus")
    return CollectionFiles(
        queries=resolve_queries(queries if queries is not None else train),
        qrels=resolve_qrels(qrels if qrels is not None else train, split),
        corpus=resolve_corpus(corpus if corpus is not None else train),
    )


def _texts_of(corpus_path: Path, wanted: set[str]) -> dict[str, str]:
    """Only the wanted documents' texts, streaming the corpus (a large corpus is never held whole)."""
    from llara_cli.data.corpus import iter_documents

    return {document.doc_id: document.text for document in iter_documents(corpus_path) if document.doc_id in wanted}


def mine_training_data(files: CollectionFiles, run_path: str | Path, settings: MiningSettings = MiningSettings(),
                       query_ids: Collection[str] | None = None) -> TrainingData:
    """Positives from the qrels, hard negatives mined from the run: the training set of a collection
    (of its judged queries among ``query_ids`` when given)."""
    from llara_cli.data.corpus import read_queries
    from llara_cli.data.qrels import read_qrels
    from llara_cli.data.runs import group_run, read_run

    settings.validate()
    positives = positives_from_qrels(read_qrels(files.qrels), settings.min_relevance)
    if query_ids is not None:
        positives = {query_id: doc_ids for query_id, doc_ids in positives.items() if query_id in query_ids}
    if not positives:
        raise UsageError(f"{files.qrels}: no judgement with relevance >= {settings.min_relevance}"
                         + (" for the selected queries" if query_ids is not None else ""))
    run = group_run(read_run(run_path))
    if not set(run) & set(positives):
        raise UsageError(f"{run_path}: the run has none of the {len(positives)} judged queries of {files.qrels}")
    margin_counts: dict[str, int] = {}
    negatives = mine_negatives(run, positives, settings, margin_counts)
    queries = {query.query_id: query.text for query in read_queries(files.queries)}
    wanted = {doc_id for ids in (*positives.values(), *negatives.values()) for doc_id in ids}
    examples = build_training_examples(queries, _texts_of(files.corpus, wanted), positives, negatives,
                                       corpus_source=files.corpus, queries_source=files.queries)
    data = TrainingData(examples, source=f"{files.qrels} + {run_path}")
    data.stats = {
        "queries": len(examples),
        "positives": sum(len(example.positives) for example in examples),
        "negatives": sum(len(example.negatives) for example in examples),
        "queries_not_in_run": sum(1 for query_id in positives if query_id not in run),
        "queries_without_negatives": data.without_negatives,
        **(margin_counts if settings.score_ceiling(0.0) is not None else {}),
    }
    if data.without_negatives:
        logger.warning("%d of %d queries have no hard negative (absent from the run, or every candidate judged "
                       "relevant)", data.without_negatives, len(examples))
    return data


def load_training_data(train: str | Path | None = None, *, queries: str | Path | None = None,
                       qrels: str | Path | None = None, corpus: str | Path | None = None,
                       split: str = DEFAULT_SPLIT, negatives_from: str | Path | None = None,
                       mining: MiningSettings = MiningSettings()) -> TrainingData:
    """A training jsonl as is, or a collection with negatives mined from ``negatives_from`` (a TREC run)."""
    train_path = Path(train) if train is not None else None
    if train_path is not None and train_path.is_file():
        if negatives_from is not None or any(part is not None for part in (queries, qrels, corpus)):
            raise UsageError(f"{train_path} is a training file: --negatives-from, --queries, --qrels and --corpus "
                             "only apply to a collection (a BEIR directory or --queries/--qrels/--corpus)")
        examples = read_training_file(train_path)
        data = TrainingData(examples, source=str(train_path))
        data.stats = {"queries": len(examples), "positives": sum(len(e.positives) for e in examples),
                      "negatives": sum(len(e.negatives) for e in examples),
                      "queries_without_negatives": data.without_negatives}
        return data
    files = collection_files(train, queries=queries, qrels=qrels, corpus=corpus, split=split)
    if negatives_from is None:
        raise UsageError("training on a collection needs hard negatives: pass --negatives-from RUN (a TREC run "
                         "from `llara search`, dense or --bm25), or a training jsonl made with `llara mine`")
    return mine_training_data(files, negatives_from, mining)
