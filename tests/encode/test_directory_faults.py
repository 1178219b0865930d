"""Faults during encode: SIGKILL mid-run, a second writer, Ctrl-C."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from llara_cli.cli.app import app
from llara_cli.encode.directory import CHUNKS_DIR
from llara_cli.encode.embedding_store import load_embeddings
from llara_cli.storage.locks import LOCK_FILE
from tests.conftest import WORDS
from tests.storage.test_locks import hold_lock_in_another_process

POLL_SECONDS = 0.02
KILL_DEADLINE_SECONDS = 120


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.jsonl"
    lines = [json.dumps({"_id": f"d{index}", "text": " ".join(WORDS[(index * 7 + offset) % len(WORDS)]
                                                             for offset in range(20 + index % 30))})
             for index in range(1500)]
    path.write_text("\n".join(lines) + "\n")
    return path


def encode_command(corpus, model_dir, out):
    return [sys.executable, "-m", "llara_cli", "encode", str(corpus), "--model", str(model_dir), "--out", str(out),
            "--batch-size", "4", "--chunk-size", "16"]


@pytest.mark.slow
def test_encode_killed_with_sigkill_resumes_to_the_bit_identical_result(corpus, tiny_model_dir, tmp_path):
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(encode_command(corpus, tiny_model_dir, tmp_path / "clean"), check=True, env=environment,
                   capture_output=True)
    killed_out = tmp_path / "killed"
    process = subprocess.Popen(encode_command(corpus, tiny_model_dir, killed_out), env=environment,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + KILL_DEADLINE_SECONDS
    while not list((killed_out / CHUNKS_DIR).glob("*.npy")) and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (killed_out / "meta.json").exists(), "the run finished before it could be killed"
    assert (killed_out / LOCK_FILE).exists()  # a dead process's lock is left behind, and must not block
    resumed = subprocess.run(encode_command(corpus, tiny_model_dir, killed_out), env=environment,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    clean, recovered = load_embeddings(tmp_path / "clean"), load_embeddings(killed_out)
    assert recovered.ids == clean.ids
    assert np.array_equal(np.asarray(recovered.vectors), np.asarray(clean.vectors))


def test_a_second_writer_is_refused_while_the_first_runs(corpus, tiny_model_dir, tmp_path):
    out = tmp_path / "emb"
    out.mkdir()
    holder = hold_lock_in_another_process("directory", out)
    try:
        result = CliRunner().invoke(app, ["encode", str(corpus), "--model", str(tiny_model_dir), "--out", str(out)])
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 1
    assert f"being written by another llara process (pid {holder.pid}," in result.output
    assert not (out / "meta.json").exists()


def test_ctrl_c_exits_130_and_says_how_to_resume(corpus, tiny_model_dir, tmp_path, monkeypatch):
    import llara_cli.encode.directory as encode_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(encode_module, "encode_to_directory", interrupted)
    result = CliRunner().invoke(app, ["encode", str(corpus), "--model", str(tiny_model_dir), "--out",
                                      str(tmp_path / "emb")])
    assert result.exit_code == 130
    assert "run the same command again to resume" in result.output
