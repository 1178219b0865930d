"""Truncating embeddings to a prefix of their dimensions (Matryoshka use): ``llara encode/search --dim D``.

A model finetuned with ``--mrl-dims`` (:func:`llara_cli.core.contrastive.matryoshka_contrastive_loss`) is trained
so that the first ``D`` dimensions, L2-normalised again, are an embedding on their own; its
``llara_config.json`` lists those dims (``mrl_dims``). Any model can be truncated, but one that was not trained
for the dim loses more quality: that is allowed with one warning per model and dim.

An embedding set or index of truncated vectors records the model's full dim as ``truncated_from`` in its
``meta.json`` (beside ``dim``, the stored one); ``llara search`` cuts the queries to the index's dim and
refuses a ``--dim`` that differs from it.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from llara_cli.errors import UsageError

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)

TRUNCATED_FROM_FIELD = "truncated_from"  # meta.json: the model's full embedding dim, for truncated vectors
_warned: set[tuple[str, int]] = set()  # (model, dim) already warned about in this process


def check_truncation_dim(dim: int, full_dim: int, where: str) -> None:
    """Refuse a prefix dim outside ``1..full_dim`` with a one-line error naming ``where`` the vectors come from."""
    if dim < 1:
        raise UsageError(f"--dim must be at least 1, got {dim}")
    if dim > full_dim:
        raise UsageError(f"--dim {dim} is larger than the {full_dim}-dimensional vectors of {where}")


def truncate_vectors(vectors: np.ndarray, dim: int, normalize: bool) -> np.ndarray:
    """The first ``dim`` dimensions of ``vectors (n, full_dim)`` as float32 ``(n, dim)``, L2-normalised again
    when ``normalize`` (the embeddings were normalised at full dim)."""
    import numpy as np

    prefix = np.ascontiguousarray(np.asarray(vectors)[:, :dim], dtype=np.float32)  # (n, dim)
    if normalize:
        norms = np.linalg.norm(prefix, axis=1, keepdims=True)  # (n, 1)
        prefix /= np.maximum(norms, np.finfo(np.float32).tiny)
    return prefix


def trained_dims(config: Any) -> tuple[int, ...]:
    """The prefix dims a model was trained for (``mrl_dims`` of its llara config; empty if none)."""
    return tuple(getattr(config, "mrl_dims", None) or ())


def warn_if_not_trained_for(config: Any, model: str, dim: int, full_dim: int) -> None:
    """Warn once per ``(model, dim)`` when a model is truncated to a dim it was not trained for."""
    if dim == full_dim or dim in trained_dims(config) or (model, dim) in _warned:
        return
    _warned.add((model, dim))
    trained = trained_dims(config)
    logger.warning(
        "model %s was not trained for %d-dimensional prefixes (%s): truncating its %d-dimensional embeddings "
        "works but loses more quality than a model finetuned with --mrl-dims",
        model, dim, f"it was trained for {', '.join(map(str, trained))}" if trained else "no --mrl-dims", full_dim,
    )


def resolve_query_dim(requested: int | None, index_dim: int, encoder_dim: int, truncated_from: Any,
                      where: str) -> int:
    """The dim queries are cut to for an index of ``index_dim`` vectors: refuses a ``requested`` dim that
    differs from it, and an index whose dim the encoder cannot give (not a prefix it was truncated from)."""
    if requested is not None and requested != index_dim:
        raise UsageError(f"--dim {requested}: {where} holds {index_dim}-dimensional passages; the query and "
                         f"passage dims must agree")
    if encoder_dim == index_dim:
        return index_dim
    if encoder_dim > index_dim and (truncated_from == encoder_dim or requested is not None):
        return index_dim
    hint = f" (pass --dim {index_dim} to cut the queries to it)" if encoder_dim > index_dim else ""
    raise UsageError(f"the query model gives {encoder_dim}-dimensional embeddings; {where} holds "
                     f"{index_dim}{hint}")
