"""The model dtype names the CLI accepts (``--dtype fp32|bf16|fp16``) and their torch dtypes."""
from __future__ import annotations

from typing import TYPE_CHECKING

from llara_cli.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

DTYPES: dict[str, str] = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
"""The ``--dtype`` choices mapped to ``torch`` attribute names; ``torch_dtype(name)`` returns the torch dtype."""


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype for a ``DTYPES`` name (``fp32``, ``bf16``, ``fp16``); anything else -> UsageError."""
    if name not in DTYPES:
        raise UsageError(f"unknown dtype '{name}': expected one of {', '.join(DTYPES)}")
    import torch

    return getattr(torch, DTYPES[name])
