"""`llara demo-collection`: builds a judged collection; a foreign output directory is one error line."""
from __future__ import annotations

import functools
import sys
from pathlib import Path

import pytest

from llara_cli.data.corpus import read_queries
from llara_cli.errors import UsageError
from tests.cli.conftest import invoke as invoke_llara

SMALL_MODULES = ("argparse", "json", "textwrap", "zipfile")  # a quick walk instead of the whole stdlib


invoke = functools.partial(invoke_llara, "demo-collection")  # llara demo-collection ARGS...


def test_demo_collection_refuses_a_foreign_directory_in_one_line(tmp_path: Path) -> None:
    out_dir = tmp_path / "cli"
    out_dir.mkdir()
    (out_dir / "x").write_text("", encoding="utf-8")
    result = invoke("--out", out_dir, "--max-documents", "20", "--num-queries", "5")
    assert result.exit_code == UsageError.exit_code
    error_lines = result.output.strip().splitlines()
    assert len(error_lines) == 1 and error_lines[0].startswith("error:")


def test_demo_collection_builds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdlib_module_names", frozenset(SMALL_MODULES))  # a quick walk
    out_dir = tmp_path / "cli"
    result = invoke("--out", out_dir, "--max-documents", "20", "--num-queries", "5", "--seed", "3")
    assert result.exit_code == 0, result.output
    assert "20 documents, 5 queries" in result.output
    assert len(read_queries(out_dir)) == 5
