"""Security rows of the catalogue: no unpickling, no remote code by default, inputs never choose write paths."""
from __future__ import annotations

import json
import re

from typer.testing import CliRunner

from llara_cli.cli.app import app
from tests.conftest import REPO_ROOT

UNSAFE_LOADING = re.compile(r"import pickle|pickle\.load|torch\.load\((?![^)]*weights_only=True)|allow_pickle=True"
                            r"|trust_remote_code=True")


def test_the_package_never_unpickles_or_trusts_remote_code_by_default():
    offenders = [f"{path.relative_to(REPO_ROOT)}:{number}"
                 for path in sorted((REPO_ROOT / "llara_cli").rglob("*.py"))
                 for number, line in enumerate(path.read_text().splitlines(), start=1)
                 if UNSAFE_LOADING.search(line)]
    assert offenders == []


def test_ids_that_look_like_paths_never_write_outside_the_output(tiny_model_dir, tmp_path):
    corpus = tmp_path / "data" / "corpus.jsonl"
    corpus.parent.mkdir()
    corpus.write_text("".join(json.dumps({"_id": doc_id, "text": "the cell"}) + "\n"
                              for doc_id in ("../../escaped", "/tmp/absolute-escape", "ok")))
    before = {path for path in tmp_path.rglob("*")}
    result = CliRunner().invoke(app, ["encode", str(corpus), "--model", str(tiny_model_dir),
                                      "--out", str(tmp_path / "out" / "emb")])
    assert result.exit_code == 0, result.output
    created = {path for path in tmp_path.rglob("*")} - before
    assert all(tmp_path / "out" in path.parents or path == tmp_path / "out" for path in created)
    assert (tmp_path / "out" / "emb" / "ids.txt").read_text().splitlines() == ["../../escaped", "/tmp/absolute-escape", "ok"]


def test_unwritable_output_is_a_one_line_error(tiny_model_dir, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"_id": "a", "text": "the cell"}) + "\n")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = CliRunner().invoke(app, ["encode", str(corpus), "--model", str(tiny_model_dir),
                                      "--out", str(blocker / "emb")])
    assert result.exit_code == 1
    assert "cannot create" in result.output and "Traceback" not in result.output
