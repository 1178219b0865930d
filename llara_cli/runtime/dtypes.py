"""The dtype names llara accepts (``--dtype`` and ``--precision``: ``auto``, ``fp32``, ``bf16``, ``fp16``), parsed
once at the edge into :class:`Dtype`, and their torch dtypes.

``auto`` is resolved for the hardware by :func:`llara_cli.runtime.precision.resolve_dtype`; every other place
takes a :class:`Dtype` (a ``str`` enum, so it compares, hashes and serialises as its name).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from llara_cli.choices import StrChoice
from llara_cli.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch


class Dtype(StrChoice):
    AUTO = "auto"  # bf16 where the hardware runs it natively, else fp32 (runtime.precision.resolve_dtype)
    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"


DEFAULT_DTYPE = Dtype.AUTO
CONCRETE_DTYPES = (Dtype.FP32, Dtype.BF16, Dtype.FP16)
TORCH_DTYPE_NAMES: dict[Dtype, str] = {Dtype.FP32: "float32", Dtype.BF16: "bfloat16", Dtype.FP16: "float16"}
DTYPES = TORCH_DTYPE_NAMES  # the concrete names mapped to ``torch`` attribute names (older spelling)


def parse_dtype(value: str | Dtype) -> Dtype:
    """The :class:`Dtype` named ``value``; anything else -> UsageError listing the choices."""
    try:
        return Dtype(value)
    except ValueError:
        raise UsageError(f"unknown dtype '{value}': expected one of {', '.join(d.value for d in Dtype)}") from None


def dtype_of(tensor_dtype: torch.dtype) -> Dtype:
    """The concrete :class:`Dtype` of a torch dtype (``torch.bfloat16`` -> ``bf16``)."""
    name = str(tensor_dtype).removeprefix("torch.")
    for dtype, torch_name in TORCH_DTYPE_NAMES.items():
        if torch_name == name:
            return dtype
    raise UsageError(f"no llara dtype for {tensor_dtype}: expected one of {', '.join(TORCH_DTYPE_NAMES.values())}")


def torch_dtype(name: str | Dtype) -> torch.dtype:
    """The torch dtype for a concrete dtype (``fp32``, ``bf16``, ``fp16``); ``auto`` or anything else -> UsageError."""
    dtype = parse_dtype(name)
    if dtype not in TORCH_DTYPE_NAMES:
        raise UsageError(f"dtype '{dtype}' must be resolved first: expected one of "
                         f"{', '.join(d.value for d in CONCRETE_DTYPES)}")
    import torch

    return getattr(torch, TORCH_DTYPE_NAMES[dtype])
