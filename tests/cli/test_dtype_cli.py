"""`--dtype auto` through encode/index/search: the dtype used is resolved for the machine, recorded and printed."""
from __future__ import annotations

import json

import pytest

from llara_cli.runtime import precision
from tests.cli.conftest import invoke
from tests.runtime.test_precision import ZEN3_AVX2, ZEN4

DOCS = {"d1": "the protein cell gene", "d2": "river city music film", "d3": "a model for dense retrieval"}
QUERIES = {"q1": "protein gene", "q2": "dense retrieval"}


@pytest.fixture
def collection(tmp_path):
    directory = tmp_path / "collection"
    directory.mkdir()
    (directory / "corpus.jsonl").write_text("".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in DOCS.items()))
    (directory / "queries.jsonl").write_text("".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in QUERIES.items()))
    return directory




@pytest.mark.parametrize(("hardware", "expected", "torch_name"), [(ZEN3_AVX2, "fp32", "float32"),
                                                                   (ZEN4, "bf16", "bfloat16")])
def test_auto_dtype_is_recorded_in_embedding_and_index_metadata_and_printed(
        collection, tiny_model_dir, tmp_path, monkeypatch, hardware, expected, torch_name):
    monkeypatch.setattr(precision, "detect_hardware", lambda device_type="cpu": hardware)
    result = invoke("encode", collection, "--model", tiny_model_dir, "--out", tmp_path / "emb")
    assert result.exit_code == 0, result.output
    assert f"{expected}) ->" in result.stdout
    assert json.loads((tmp_path / "emb" / "meta.json").read_text())["model_dtype"] == torch_name
    assert invoke("index", tmp_path / "emb", "--out", tmp_path / "index").exit_code == 0
    assert json.loads((tmp_path / "index" / "meta.json").read_text())["model_dtype"] == torch_name
    result = invoke("search", "--index", tmp_path / "index", "--queries", collection, "--split", "",
                    "--out", tmp_path / "run.trec", "--k", 2)
    assert result.exit_code == 0, result.output
    assert f"top 2, {expected})" in result.stdout


def test_an_unknown_dtype_is_refused_at_the_edge_naming_the_choices(collection, tiny_model_dir, tmp_path):
    result = invoke("encode", collection, "--model", tiny_model_dir, "--out", tmp_path / "emb", "--dtype", "int4")
    assert result.exit_code != 0
    assert "'int4'" in result.output and "--dtype" in result.output and "Traceback" not in result.output
    assert all(choice in result.output for choice in ("auto", "fp32", "bf16", "fp16"))
    assert not (tmp_path / "emb").exists()


def test_the_library_parses_dtypes_once_with_the_same_choices():
    from llara_cli.errors import UsageError
    from llara_cli.runtime.dtypes import Dtype, parse_dtype, torch_dtype

    assert parse_dtype("bf16") is Dtype.BF16 and f"{Dtype.BF16}" == "bf16" and Dtype.FP32 == "fp32"
    with pytest.raises(UsageError, match="unknown dtype 'int4'"):
        parse_dtype("int4")
    with pytest.raises(UsageError, match="must be resolved first"):
        torch_dtype(Dtype.AUTO)
