"""Security rows of the catalogue: no unpickling, no remote code by default, inputs never choose write paths."""
from __future__ import annotations

import ast
import json

from typer.testing import CliRunner

from llara_cli.cli.app import app
from tests.conftest import REPO_ROOT

PICKLE_MODULES = {"pickle", "cPickle", "dill", "joblib"}


def unsafe_loading_calls(source: str) -> list[int]:
    """Line numbers of code (not strings or comments) that unpickles or trusts remote code: an import of a pickle
    module, ``pickle.load(s)``, ``torch.load`` without ``weights_only=True``, ``allow_pickle=True``, or a literal
    ``trust_remote_code=True``."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import) and any(alias.name.split(".")[0] in PICKLE_MODULES for alias in node.names):
            lines.append(node.lineno)
        if (isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PICKLE_MODULES
                and not all(alias.name.endswith("Error") for alias in node.names)):  # its exceptions are safe
            lines.append(node.lineno)
        if not isinstance(node, ast.Call):
            continue
        function = ast.unparse(node.func)
        keywords = {keyword.arg: keyword.value for keyword in node.keywords}
        literal_true = {name for name, value in keywords.items() if isinstance(value, ast.Constant) and value.value is True}
        if function.endswith(("pickle.load", "pickle.loads")) or literal_true & {"allow_pickle", "trust_remote_code"}:
            lines.append(node.lineno)
        if function.endswith("torch.load") and "weights_only" not in literal_true:
            lines.append(node.lineno)
    return lines


def test_the_unsafe_loading_check_finds_each_kind_in_code_and_ignores_strings():
    code = ("import pickle\nfrom pickle import UnpicklingError\ntorch.load(path)\nnp.load(path, allow_pickle=True)\n"
            "AutoModel.from_pretrained(path, trust_remote_code=True)\ntorch.load(path, weights_only=True)\n"
            "text = 'SentenceTransformer(d, trust_remote_code=True)'\n")
    assert unsafe_loading_calls(code) == [1, 3, 4, 5]  # line 2 imports an exception only


def test_the_package_never_unpickles_or_trusts_remote_code_by_default():
    offenders = [f"{path.relative_to(REPO_ROOT)}:{number}"
                 for path in sorted((REPO_ROOT / "llara_cli").rglob("*.py"))
                 for number in unsafe_loading_calls(path.read_text())]
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
