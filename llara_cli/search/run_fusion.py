"""Fusing TREC run files (``llara search --fuse``): read, fuse by a :class:`FusionMethod`, write the run and
its provenance (method, weights and how they were chosen) beside it as ``<run>.json``.

``robust`` (the default) and ``tuned`` are the BM25-anchored fusions of :mod:`llara_cli.search.anchored_fusion`;
``rrf`` and ``weighted`` are :mod:`llara_cli.search.fusion`'s.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from enum import Enum
from pathlib import Path

from llara_cli.data.qrels import Qrel
from llara_cli.data.runs import group_run, read_run, write_run
from llara_cli.errors import UsageError
from llara_cli.search.anchored_fusion import (
    ROBUST_DENSE_WEIGHT,
    anchored_fusion,
    anchored_weights,
    check_disjoint,
    tune_dense_weight,
)
from llara_cli.search.fusion import (
    FUSION_DEPTH,
    RRF_K,
    FusedResults,
    check_weights,
    reciprocal_rank_fusion,
    weighted_fusion,
)
from llara_cli.storage.files import write_json

logger = logging.getLogger(__name__)

PROVENANCE_SUFFIX = ".json"  # fused.trec -> fused.trec.json


class FusionMethod(str, Enum):
    ROBUST = "robust"  # BM25-anchored convex combination with a small fixed dense weight (no labels needed)
    TUNED = "tuned"  # the same, its dense weight tuned on labelled queries
    RRF = "rrf"
    WEIGHTED = "weighted"


DEFAULT_FUSION_METHOD = FusionMethod.ROBUST


def provenance_path(run: str | Path) -> Path:
    """Where a fused run's provenance lives: ``<run>.json`` beside it."""
    run = Path(run)
    return run.with_name(run.name + PROVENANCE_SUFFIX)


def _parse_method(method: FusionMethod | str) -> FusionMethod:
    try:
        return FusionMethod(method)
    except ValueError:
        choices = ", ".join(choice.value for choice in FusionMethod)
        raise UsageError(f"unknown fusion method {method!r}; choose one of {choices}") from None


def _check_distinct(paths: Sequence[str | Path], what: str) -> None:
    resolved = [Path(path).resolve() for path in paths]
    repeated = sorted({str(path) for path, where in zip(paths, resolved) if resolved.count(where) > 1})
    if repeated:
        raise UsageError(f"{what} {', '.join(repeated)} is given more than once: fuse each run once")


def _anchored(
    method: FusionMethod, runs: list, tune_runs: Sequence[str | Path] | None, tune_qrels: Sequence[Qrel] | None,
    depth: int,
) -> tuple[FusedResults, dict]:
    if method is FusionMethod.ROBUST:
        dense_weight, chosen = ROBUST_DENSE_WEIGHT, {"chosen_by": "robust default (no labels)"}
    else:
        if not tune_runs or tune_qrels is None:
            raise UsageError("--method tuned needs the runs of the same systems on the tuning queries and their qrels")
        if len(tune_runs) != len(runs):
            raise UsageError(f"got {len(tune_runs)} tuning runs for {len(runs)} runs to fuse; give one per run, "
                             "in the same order")
        _check_distinct(tune_runs, "tuning run")
        tuning = [group_run(read_run(path)) for path in tune_runs]
        check_disjoint({qrel.query_id for qrel in tune_qrels} & set(tuning[0]), runs[0])
        tuned = tune_dense_weight(tuning, tune_qrels, depth=depth)
        dense_weight = tuned.dense_weight
        chosen = {"chosen_by": f"tuned by {tuned.measure} on labelled queries",
                  "tuning_runs": [str(path) for path in tune_runs], "tuning": tuned.to_dict()}
    fused = anchored_fusion(runs, dense_weight, depth=depth)
    return fused, {"dense_weight": dense_weight, "weights": anchored_weights(dense_weight, len(runs)), **chosen}


def fuse_run_files(
    paths: Sequence[str | Path],
    method: FusionMethod | str,
    out: str | Path,
    k: int = RRF_K,
    weights: Sequence[float] | None = None,
    depth: int = FUSION_DEPTH,
    tune_runs: Sequence[str | Path] | None = None,
    tune_qrels: Sequence[Qrel] | None = None,
) -> FusedResults:
    """Read TREC runs, fuse them with ``method`` and atomically write the fused run and its provenance.

    ``robust`` and ``tuned`` anchor on the first run (BM25): its weight is ``1 - w``, the others share ``w``;
    ``tuned`` chooses ``w`` on ``tune_runs`` (the same systems' runs on labelled tuning queries, same order)
    scored against ``tune_qrels``, and refuses tuning queries that are also in the runs to fuse.
    """
    method = _parse_method(method)
    if weights is not None and method is not FusionMethod.WEIGHTED:
        raise UsageError(f"weights apply to weighted fusion only, not to {method.value}")
    if (tune_runs or tune_qrels is not None) and method is not FusionMethod.TUNED:
        raise UsageError(f"tuning runs and qrels apply to --method tuned only, not to {method.value}")
    _check_distinct(paths, "run")
    runs = [group_run(read_run(path)) for path in paths]
    provenance: dict = {"method": method.value, "runs": [str(path) for path in paths], "depth": depth}
    if method is FusionMethod.RRF:
        fused = reciprocal_rank_fusion(runs, k=k, depth=depth)
        provenance["rrf_k"] = k
    elif method is FusionMethod.WEIGHTED:
        fused = weighted_fusion(runs, weights=weights, depth=depth)
        provenance.update(weights=check_weights(weights, len(runs)), chosen_by="given")
    else:
        fused, chosen = _anchored(method, runs, tune_runs, tune_qrels, depth)
        provenance.update(chosen)
    write_run(out, fused, tag=f"llara-{method.value}")
    write_json(provenance_path(out), provenance)
    logger.info("fused %d runs over %d queries into %s", len(runs), len(fused), out)
    return fused
