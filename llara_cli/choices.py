"""The base of llara's choice enums (``--dtype``, ``--prompt-family``, ...): a ``str`` enum that prints, formats,
compares and serialises as its value, so a choice is parsed once at the edge and stays an enum after."""
from __future__ import annotations

from enum import Enum


class StrChoice(str, Enum):
    def __str__(self) -> str:  # f"{choice}" is "bf16", not "Dtype.BF16" (Python < 3.12 prints the name)
        return self.value

    __format__ = str.__format__
