"""`llara export`: thin wiring over export_model; one-line errors."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from llara_cli.cli.app import app

pytest.importorskip("sentence_transformers")


def test_export_writes_a_sentence_transformers_directory(tiny_model_dir, tmp_path):
    result = CliRunner().invoke(app, ["export", str(tiny_model_dir), "--to", "sentence-transformers",
                                      "--out", str(tmp_path / "st")])
    assert result.exit_code == 0, result.output
    assert "paper prompt, dim 64" in result.output and "sentence-transformers" in result.output
    assert {"modules.json", "README.md", "llara_config.json", "model.safetensors"} <= {
        path.name for path in (tmp_path / "st").iterdir()}


def test_export_refuses_an_existing_output_in_one_line(tiny_model_dir, tmp_path):
    (tmp_path / "st").mkdir()
    (tmp_path / "st" / "keep.txt").write_text("x")
    result = CliRunner().invoke(app, ["export", str(tiny_model_dir), "--out", str(tmp_path / "st")])
    assert result.exit_code != 0
    assert "already exists and is not empty" in result.output and "Traceback" not in result.output
