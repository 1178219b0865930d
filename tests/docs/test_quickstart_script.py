"""scripts/quickstart.sh: its defaults let the machine pick the dtype (never bf16 where bf16 is not native)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

QUICKSTART = REPO_ROOT / "scripts" / "quickstart.sh"
QUICKSTART_VARIABLES = ("DTYPE", "ADAPT_STEPS", "QUICKSTART_DOCS", "QUICKSTART_QUERIES", "MODEL", "SPLIT")
FAKE_LLARA = """#!/usr/bin/env bash
printf '%s\\n' "$*" >> "$LLARA_CALLS"
for arg in "$@"; do [ "$prev" = "--out" ] && mkdir -p "$arg" && touch "$arg/llara_config.json"; prev=$arg; done
"""


def run_with_recording_llara(tmp_path: Path, **env: str) -> list[str]:
    """Run the script with a `llara` on PATH that only records its arguments; returns one line per call."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "llara").write_text(FAKE_LLARA)
    (bin_dir / "llara").chmod(0o755)
    data = tmp_path / "data"
    data.mkdir()
    calls = tmp_path / "calls.txt"
    inherited = {key: value for key, value in os.environ.items() if key not in QUICKSTART_VARIABLES}
    environment = {**inherited, "PATH": f"{bin_dir}:{os.environ['PATH']}", "LLARA_CALLS": str(calls),
                   "DATA": str(data), "QUICKSTART_OUT": str(tmp_path / "out"), **env}
    result = subprocess.run(["bash", str(QUICKSTART)], env=environment, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "== time per stage" in result.stdout
    return calls.read_text().splitlines()


def test_quickstart_defaults_never_request_bf16(tmp_path):
    calls = run_with_recording_llara(tmp_path)
    commands = [call.split()[0] for call in calls]
    assert commands == ["adapt", "encode", "index", "search", "search", "search", "evaluate", "env"]
    assert not any("bf16" in call for call in calls)
    model_runs = [call.split() for call in calls if call.split()[0] in {"adapt", "encode"} or "--index" in call]
    for words in model_runs:
        option = "--precision" if words[0] == "adapt" else "--dtype"
        assert words[words.index(option) + 1] == "auto", words


def test_quickstart_dtype_override_reaches_every_model_command(tmp_path):
    calls = run_with_recording_llara(tmp_path, DTYPE="fp32", ADAPT_STEPS="3")
    assert sum("--dtype fp32" in call or "--precision fp32" in call for call in calls) == 3
    assert any("--max-steps 3" in call for call in calls)


@pytest.mark.parametrize("path", ["Makefile", "scripts/quickstart.sh"])
def test_no_hard_coded_bf16_in_cpu_entry_points(path):
    text = (REPO_ROOT / path).read_text()
    assert "--bf16" not in text and "--dtype bf16" not in text and "--precision bf16" not in text


def test_quickstart_fuses_with_the_label_free_default_not_rrf(tmp_path):
    fuse = [call for call in run_with_recording_llara(tmp_path) if "--fuse" in call]
    assert len(fuse) == 1
    assert "--method" not in fuse[0] and "rrf" not in fuse[0]


def test_quickstart_adapts_in_the_paper_form_that_measured_best_at_its_budget(tmp_path):
    adapt = [call for call in run_with_recording_llara(tmp_path) if call.startswith("adapt ")]
    assert len(adapt) == 1
    assert "--prompt-family paper" in adapt[0] and "--objective paper" in adapt[0]
