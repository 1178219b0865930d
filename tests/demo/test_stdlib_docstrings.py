"""Splitting stdlib docstrings (``llara_cli.demo.stdlib_docstrings``)."""
from __future__ import annotations

import pytest

from llara_cli.demo.stdlib_docstrings import code_line_fraction, split_docstring


def test_split_docstring() -> None:
    docstring = split_docstring("m.f", "Serialize obj to a JSON string, e.g. Foo.\n\nIf skipkeys is true,\nskip.")
    assert docstring.summary == "Serialize obj to a JSON string, e.g. Foo."
    assert docstring.body == "If skipkeys is true, skip."
    long_first = split_docstring("m.g", "Return the thing. It is\nuseful.\n\nMore.")
    assert (long_first.summary, long_first.body) == ("Return the thing.", "It is useful. More.")


def test_code_line_fraction() -> None:
    assert code_line_fraction([">>> f(1)", "2", "", "Some prose."]) == pytest.approx(2 / 3)
    assert code_line_fraction(["prose", "", "   "]) == 0.0
