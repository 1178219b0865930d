"""`llara env`: the report lines and the documented `--json` schema."""
from __future__ import annotations

import json

from typer.testing import CliRunner

from llara_cli.cli.app import app
from llara_cli.environment import ENVIRONMENT_SCHEMA, ENVIRONMENT_SCHEMA_VERSION, PACKAGE_DISTRIBUTIONS
from llara_cli.runtime import precision
from tests.runtime.test_precision import ZEN3_AVX2

NESTED_KEYS = {
    "cpu": {"model", "machine", "torch_capability", "avx2", "avx512", "amx", "bf16_flags", "native_bf16"},
    "precision": {"auto", "native_bf16", "decided_by", "probe"},
    "threads": {"torch", "budget", "source", "cpus_available", "omp_num_threads", "tokenizers_parallelism"},
    "embedded_model": {"dir", "converted"},
}


def test_env_json_follows_the_documented_schema(tmp_path, monkeypatch):
    monkeypatch.setenv("LLARA_HOME", str(tmp_path))
    result = CliRunner().invoke(app, ["env", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert set(info) == set(ENVIRONMENT_SCHEMA)
    for key, expected in ENVIRONMENT_SCHEMA.items():
        assert isinstance(info[key], expected), key
    for key, fields in NESTED_KEYS.items():
        assert set(info[key]) == fields, key
    assert info["schema_version"] == ENVIRONMENT_SCHEMA_VERSION
    assert set(info["packages"]) == set(PACKAGE_DISTRIBUTIONS) and info["packages"]["torch"]
    assert info["devices"][0]["type"] == "cpu"
    assert info["precision"]["auto"]["cpu"] in {"fp32", "bf16"}
    assert info["threads"]["torch"] >= 1
    assert info["llara_home"] == str(tmp_path) and info["embedded_model"]["converted"] is False


def test_env_text_names_cpu_capability_auto_dtype_and_threads(tmp_path, monkeypatch):
    monkeypatch.setenv("LLARA_HOME", str(tmp_path))
    monkeypatch.setattr(precision, "detect_hardware", lambda device_type="cpu": ZEN3_AVX2)
    result = CliRunner().invoke(app, ["env"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any(line.startswith("- torch: ") for line in lines)
    assert "- CPU: " in result.stdout and "torch kernels AVX2; AVX2 yes, AVX-512 no, AMX no" in result.stdout
    assert "- native bf16 (CPU): no (capability queries)" in lines
    assert "- --dtype auto: fp32 on cpu" in lines
    assert any(line.startswith("- torch threads: ") for line in lines)
    assert "embedded model not converted yet" in result.stdout
