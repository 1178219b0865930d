"""Which prompt an adapted model's queries get, chosen without labels (``llara adapt --query-prompt auto``).

LLaRA embeds queries with the EBAR prompt (the embedding predicts the next passage) and passages with the EBAE
prompt (it predicts the passage itself). After a short adaptation -- the embedded model's 200 steps -- the EBAR side
is the weaker one: on Cranfield, CACM and SciFact the adapted smollm2-135m retrieved better with its queries laid
out with the passage prompt, a symmetric model (docs/results.md). Which prompt a model should use is chosen here on
the adaptation corpus itself, with no label: pseudo-queries the corpus provides (a document's title, else a crop
of it: :mod:`llara_cli.data.corpus_pairs`) must find their own document among a sample of the corpus's passages.
Each prompt's mean reciprocal rank at 10 is measured, exactly as search would embed the queries, and the passage
prompt (``ebae``) is chosen when it beats the query prompt (``ebar``, the paper's) by :data:`MIN_GAIN`.

The choice and its measurements are kept beside the model as ``query_prompt_choice.json``.

Training data that is not a corpus of documents (the released pretraining jsonl, llara's native examples, a
finetuning jsonl without ``--corpus``) has no documents to retrieve: the model keeps the prompt of its base model
(``ebar`` for a plain one) and the choice says why.
"""
from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from llara_cli.choices import StrChoice
from llara_cli.core.prompts import QueryPrompt, parse_choice

__all__ = ["CHOICE_FILE", "MIN_GAIN", "POOL_DOCUMENTS", "PSEUDO_QUERIES", "QueryPromptChoice", "QueryPromptSetting",
           "choose_query_prompt", "record_query_prompt", "sample_corpus"]

logger = logging.getLogger(__name__)

POOL_DOCUMENTS = 2000  # passages the pseudo-queries are searched among (the whole corpus when it is smaller)
PSEUDO_QUERIES = 200
MIN_GAIN = 0.005  # the passage prompt must raise the pseudo-query MRR@10 by this much to be chosen
BATCH_SIZE = 16
CHOICE_FILE = "query_prompt_choice.json"  # in the model directory: what was measured, and the choice


class QueryPromptSetting(StrChoice):
    """``llara adapt --query-prompt``: measured (``auto``) or given."""

    AUTO = "auto"
    EBAR = "ebar"
    EBAE = "ebae"


def parse_query_prompt_setting(value: str | QueryPromptSetting) -> QueryPromptSetting:
    return parse_choice(QueryPromptSetting, value, "--query-prompt")


@dataclass(frozen=True)
class QueryPromptChoice:
    """The chosen prompt, each prompt's pseudo-query MRR@10, and how much it was measured on (or why not)."""

    query_prompt: QueryPrompt
    scores: dict[str, float] = field(default_factory=dict)  # "ebar" / "ebae" -> MRR@10
    pseudo_queries: int = 0
    passages: int = 0
    reason: str = ""  # why nothing was measured ("" when measured)

    def describe(self) -> str:
        if not self.scores:
            return f"query prompt {self.query_prompt.value} ({self.reason})"
        measured = ", ".join(f"{name} {score:.3f}" for name, score in self.scores.items())
        return (f"query prompt {self.query_prompt.value} (pseudo-query MRR@10 of {self.pseudo_queries} corpus "
                f"pseudo-queries among {self.passages} passages: {measured})")

    def to_dict(self) -> dict:
        return {"query_prompt": self.query_prompt.value, "scores": self.scores, "pseudo_queries": self.pseudo_queries,
                "passages": self.passages, "reason": self.reason}


@dataclass(frozen=True)
class CorpusSample:
    passages: list[str]  # the pool, as ``llara encode`` reads the documents (title, a space, the text)
    queries: list[str]  # pseudo-queries of pool documents
    positive_rows: list[int]  # each pseudo-query's own passage


def _documents(corpus: Path, data_format) -> Iterator:
    from llara_cli.data.adaptation import DataFormat
    from llara_cli.data.corpus_pairs import SourceDocument, iter_source_documents
    from llara_cli.storage.files import iter_lines

    if data_format is DataFormat.CORPUS:
        yield from iter_source_documents(corpus)
        return
    for line_number, line in iter_lines(corpus):  # plain text: one document a line
        if line.strip():
            yield SourceDocument(str(line_number), "", line.strip())


def sample_corpus(corpus: str | Path, data_format, *, documents: int = POOL_DOCUMENTS,
                  queries: int = PSEUDO_QUERIES, seed: int = 0) -> CorpusSample:
    """A uniform sample of ``documents`` documents (one streaming pass: a reservoir) and up to ``queries`` of
    their pseudo-queries."""
    from llara_cli.data.corpus_pairs import PairSource, document_pair

    rng = random.Random(seed)
    pool = []
    for seen, document in enumerate(_documents(Path(corpus), data_format)):
        if len(pool) < documents:
            pool.append(document)
        else:
            slot = rng.randrange(seen + 1)
            if slot < documents:
                pool[slot] = document
    passages = [f"{document.title} {document.body}".strip() for document in pool]
    pairs = [(row, document_pair(document, PairSource.AUTO, seed)) for row, document in enumerate(pool)]
    pairs = [(row, pair) for row, pair in pairs if pair is not None]
    chosen = sorted(rng.sample(range(len(pairs)), min(queries, len(pairs))))
    return CorpusSample(passages, [pairs[index][1].query for index in chosen], [pairs[index][0] for index in chosen])


def choose_query_prompt(model_dir: str | Path, corpus: str | Path, data_format, *, dtype: str = "auto",
                        device: str | None = None, seed: int = 0,
                        unmeasured: QueryPrompt = QueryPrompt.EBAR) -> QueryPromptChoice:
    """Measure both query prompts of the model in ``model_dir`` on ``corpus``'s pseudo-queries (module docstring);
    ``unmeasured`` where the data gives nothing to measure on."""
    from llara_cli.data.adaptation import DataFormat
    from llara_cli.encode.encoder import LlaraEncoder
    from llara_cli.index.whitening_choice import self_retrieval_mrr
    from llara_cli.runtime.precision import resolve_dtype

    if data_format not in (DataFormat.CORPUS, DataFormat.TEXT):
        return QueryPromptChoice(unmeasured, reason=f"the training data ({data_format.value} examples) "
                                 "has no documents to measure the query prompts on")
    sample = sample_corpus(corpus, data_format, seed=seed)
    if not sample.queries:
        return QueryPromptChoice(unmeasured, reason="no document of the corpus gives a pseudo-query "
                                 "(too short)")
    _release_memory()  # a training run's model has just gone: its memory is the encoder's now
    encoder = LlaraEncoder.load(str(model_dir), dtype=resolve_dtype(dtype, device or "cpu"), device=device)
    passages = encoder.encode_passages(sample.passages, batch_size=BATCH_SIZE)  # (n, dim)
    scores = {}
    for query_prompt in QueryPrompt:
        encoder.model.use_query_prompt(query_prompt)
        queries = encoder.encode_queries(sample.queries, batch_size=BATCH_SIZE)  # (m, dim), as search embeds them
        scores[query_prompt.value] = round(self_retrieval_mrr(queries, passages, sample.positive_rows), 4)
    better = scores[QueryPrompt.EBAE.value] >= scores[QueryPrompt.EBAR.value] + MIN_GAIN
    return QueryPromptChoice(QueryPrompt.EBAE if better else QueryPrompt.EBAR, scores, len(sample.queries),
                             len(sample.passages))


def _release_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def record_query_prompt(model_dir: str | Path, setting: str | QueryPromptSetting, corpus: str | Path | None,
                        data_format, *, device: str | None = None, seed: int = 0) -> QueryPromptChoice:
    """Write the query prompt ``setting`` asks for (``auto``: :func:`choose_query_prompt`; with nothing to measure
    on, the model keeps the prompt its config has: its base model's) into the model's ``llara_config.json`` and the
    measurements into :data:`CHOICE_FILE` (each atomically); returns the choice."""
    from llara_cli.model.config import LlaraConfig
    from llara_cli.storage.files import write_json

    setting = parse_query_prompt_setting(setting)
    config = LlaraConfig.load(model_dir)
    if setting is not QueryPromptSetting.AUTO:
        choice = QueryPromptChoice(QueryPrompt(setting.value), reason="--query-prompt")
    elif corpus is None:
        choice = QueryPromptChoice(config.query_prompt, reason="no corpus to measure on: the base model's")
    else:
        choice = choose_query_prompt(model_dir, corpus, data_format, device=device, seed=seed,
                                     unmeasured=config.query_prompt)
    replace(config, query_prompt=choice.query_prompt).save(model_dir)
    write_json(Path(model_dir) / CHOICE_FILE, choice.to_dict())
    logger.info("%s", choice.describe())
    return choice
