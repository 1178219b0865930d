"""A BEIR-layout directory as an MTEB retrieval task, for ``mteb.evaluate`` offline.

``beir_retrieval_task("data/scifact")`` reads the corpus, queries and ``qrels/<split>.tsv`` with llara's own
readers (a document's text is ``title + " " + text`` as ``llara encode`` embeds it), so MTEB scores the same
texts as ``llara encode`` / ``llara search`` / ``llara evaluate``; MTEB's retrieval evaluator ranks with the model's
``encode_query`` / ``encode_document`` and computes nDCG@10 with pytrec_eval. With network access, MTEB's own tasks
are ``mteb.get_tasks(tasks=["SciFact"])`` (docs/use-elsewhere.md).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from llara_cli.data.corpus import read_corpus, read_queries
from llara_cli.data.qrels import DEFAULT_BEIR_SPLIT, read_qrels
from llara_cli.errors import UsageError

TASK_NAME_PATTERN = re.compile(r"[^A-Za-z0-9]+")


def _task_name(directory: Path) -> str:
    return "Llara" + "".join(part.capitalize() for part in TASK_NAME_PATTERN.split(directory.name) if part)


def beir_retrieval_task(directory: str | Path, *, split: str = DEFAULT_BEIR_SPLIT, name: str | None = None,
                        k_values: tuple[int, ...] = (1, 3, 5, 10, 100, 1000)):
    """An MTEB ``AbsTaskRetrieval`` over the BEIR directory ``directory`` (its ``split`` qrels), loaded already."""
    try:
        from datasets import Dataset
        from mteb.abstasks.retrieval import AbsTaskRetrieval
        from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData
        from mteb.abstasks.task_metadata import TaskMetadata
    except ImportError:
        raise UsageError("MTEB evaluation needs mteb: pip install 'mteb>=2.26'") from None

    directory = Path(directory)
    if not directory.is_dir():
        raise UsageError(f"{directory}: not a BEIR-layout directory (corpus.jsonl, queries.jsonl, qrels/)")
    judged: dict[str, dict[str, int]] = {}
    for qrel in read_qrels(directory, split):
        judged.setdefault(qrel.query_id, {})[qrel.doc_id] = qrel.relevance
    queries = [query for query in read_queries(directory) if query.query_id in judged]
    split_data = RetrievalSplitData(
        queries=Dataset.from_list([{"id": query.query_id, "text": query.text} for query in queries]),
        corpus=Dataset.from_list([{"id": doc.doc_id, "text": doc.text} for doc in read_corpus(directory)]),
        relevant_docs={query.query_id: judged[query.query_id] for query in queries},
        top_ranked=None,
    )
    task_name = name or _task_name(directory)
    metadata = TaskMetadata(
        name=task_name, type="Retrieval", main_score="ndcg_at_10", category="t2t", modalities=["text"],
        description=f"The BEIR-layout collection {directory}, split {split}, read by llara.",
        reference=None, dataset={"path": str(directory), "revision": "local"}, eval_splits=[split],
        eval_langs=["eng-Latn"], date=None, dialect=[], domains=[], task_subtypes=[], license=None,
        annotations_creators=None, sample_creation=None, bibtex_citation="",
    )

    class LocalBeirRetrieval(AbsTaskRetrieval):
        def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
            self.dataset = {"default": {split: split_data}}
            self.data_loaded = True

    LocalBeirRetrieval.metadata = metadata
    LocalBeirRetrieval.k_values = tuple(k_values)
    LocalBeirRetrieval.__name__ = task_name
    task = LocalBeirRetrieval()
    task.load_data()
    return task
