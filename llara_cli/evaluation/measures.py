"""The ir_measures wrapper: measures parsed from strings, per-query values and their aggregates.

One tie rule for every measure, trec_eval's: a query's documents are ranked by score descending, then by doc id
*descending* (``strcmp(docno2, docno1)`` in trec_eval's ``form_res_rels.c``; pytrec_eval is trec_eval). ir_measures
hands each measure to a provider of its own, and they break ties differently (``RR@10`` goes to the msmarco
provider, which breaks them by doc id ascending, while ``nDCG@10`` goes to pytrec_eval): so the run is ranked
once here, by :func:`trec_eval_ranking`, and every provider gets strictly decreasing scores in that order.

Queries judged in the qrels that a run does not return score the measure's default (0), as ir_measures
and ``trec_eval -c`` do; run queries absent from the qrels are not scored.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from llara_cli.data.qrels import Qrel
from llara_cli.data.runs import ScoredDoc
from llara_cli.errors import UsageError

if TYPE_CHECKING:
    from ir_measures import Measure

DEFAULT_MEASURES = ("nDCG@10", "MRR@10", "R@100", "R@1000", "MAP")
CUTOFF_PARAM = "cutoff"
MIN_CUTOFF = 1  # a cutoff of 0 or less aborts the process inside pytrec_eval
MEASURE_SEPARATOR = ","
_MISSING_PARAM = re.compile(r"invalid param (\w+)=<object object at 0x[0-9a-f]+>")  # ir_measures' "not provided"

QrelsDict = dict[str, dict[str, int]]
RunDict = dict[str, dict[str, float]]
PerQuery = dict[str, dict[str, float]]  # measure label -> query_id -> value


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


def split_measure_names(names: Iterable[str]) -> list[str]:
    """Flatten ``["nDCG@10,R@100", "MAP"]`` into ``["nDCG@10", "R@100", "MAP"]``."""
    return [part.strip() for name in names for part in name.split(MEASURE_SEPARATOR) if part.strip()]


def _registered_spelling(name: str) -> str:
    """``name`` with its measure name spelled as ir_measures registers it (``ndcg@10`` -> ``nDCG@10``, ``map`` ->
    ``MAP``); unchanged when it is already registered or matches no registered name case-insensitively."""
    import ir_measures

    head, separator, rest = name.partition("@")
    base, paren, params = head.partition("(")
    registry = ir_measures.measures.registry
    if base in registry:
        return name
    matches = [known for known in registry if known.lower() == base.lower()]
    same_measure = len({str(registry[known]) for known in matches}) == 1  # NDCG and nDCG: one measure, two names
    return f"{matches[0]}{paren}{params}{separator}{rest}" if matches and same_measure else name


def parse_measures(names: Sequence[str]) -> dict[str, Measure]:
    """Map each label (as the user spelled it) to its ir_measures measure; a bad name raises UsageError.

    Labels naming the same measure twice (``MRR@10`` and ``RR@10``) keep the first spelling. Measure names are
    matched case-insensitively where that is unambiguous (``ndcg@10``, ``map``, ``mrr@10``).
    """
    import ir_measures

    if not names:
        raise UsageError("no measures given (example: nDCG@10,R@100,MAP)")
    parsed: dict[str, Measure] = {}
    for name in names:
        try:
            measure = ir_measures.parse_measure(_registered_spelling(name))
            measure.validate_params()
        except (ValueError, NameError, AssertionError, SyntaxError) as error:
            reason = _MISSING_PARAM.sub(r"parameter \1 is required", _one_line(error))
            raise UsageError(
                f"measure {name!r} is not an ir_measures measure ({reason}); examples: {', '.join(DEFAULT_MEASURES)}"
            ) from None
        cutoff = measure.params.get(CUTOFF_PARAM)
        if cutoff is not None and (not isinstance(cutoff, int) or cutoff < MIN_CUTOFF):
            raise UsageError(f"measure {name!r}: the cutoff after '@' must be a positive integer")
        if measure not in parsed.values():
            parsed[name] = measure
    return parsed


def qrels_to_dict(qrels: Iterable[Qrel]) -> QrelsDict:
    """``{query_id: {doc_id: relevance}}``, the form ir_measures reads fastest."""
    judged: QrelsDict = {}
    for qrel in qrels:
        judged.setdefault(qrel.query_id, {})[qrel.doc_id] = qrel.relevance
    return judged


def run_to_dict(run: Iterable[ScoredDoc]) -> RunDict:
    """``{query_id: {doc_id: score}}``; documents whose id equals the query id are kept (Cranfield ids overlap)."""
    scored: RunDict = {}
    for scored_doc in run:
        scored.setdefault(scored_doc.query_id, {})[scored_doc.doc_id] = scored_doc.score
    return scored


def trec_eval_ranking(scores: Mapping[str, float]) -> list[str]:
    """Doc ids best first as trec_eval ranks them: score descending, equal scores by doc id descending."""
    return [doc_id for doc_id, _score in sorted(scores.items(), key=lambda pair: (pair[1], pair[0]), reverse=True)]


def untie_run(run: RunDict) -> RunDict:
    """The run with each query's scores replaced by ``n, n-1, ..., 1`` in :func:`trec_eval_ranking` order.

    Rank-based measures (all that llara reports) are unchanged where scores differ; where they tie, every
    provider now sees trec_eval's order.
    """
    untied: RunDict = {}
    for query_id, scores in run.items():
        ranking = trec_eval_ranking(scores)
        untied[query_id] = {doc_id: float(len(ranking) - rank) for rank, doc_id in enumerate(ranking)}
    return untied


def calc_per_query(measures: Mapping[str, Measure], qrels: QrelsDict, run: RunDict) -> PerQuery:
    """Per-query values for every judged query (missing from the run -> the measure's default, 0), ties ranked
    as trec_eval ranks them for every measure (:func:`untie_run`)."""
    import ir_measures

    labels = {measure: label for label, measure in measures.items()}
    values: PerQuery = {label: {} for label in measures}
    try:
        metrics = list(ir_measures.iter_calc(list(measures.values()), qrels, untie_run(run)))
    except (ValueError, RuntimeError) as error:  # e.g. no provider installed for a measure
        raise UsageError(f"cannot compute {', '.join(measures)}: {_one_line(error)}") from None
    for metric in metrics:
        values[labels[metric.measure]][metric.query_id] = float(metric.value)
    return values


def aggregate(measures: Mapping[str, Measure], per_query: PerQuery) -> dict[str, float]:
    """Aggregate per-query values with each measure's own aggregator (a mean for almost all), as ir_measures does."""
    results: dict[str, float] = {}
    for label, measure in measures.items():
        aggregator: Any = measure.aggregator()
        for value in per_query[label].values():
            aggregator.add(value)
        results[label] = float(aggregator.result())
    return results
