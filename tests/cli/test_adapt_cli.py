from __future__ import annotations

import functools
import json
import random

import pytest
from typer.testing import CliRunner

from llara_cli.cli.app import app
from llara_cli.encode.encoder import LlaraEncoder
from llara_cli.model.config import LlaraConfig
from tests.cli.conftest import invoke as invoke_llara
from tests.conftest import WORDS


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("adapt-cli") / "wiki.txt"
    lines = [" . ".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 8))) for _ in range(3)) + " ."
             for _ in range(20)]
    path.write_text("\n".join(lines) + "\n")
    return path


invoke = functools.partial(invoke_llara, "adapt")  # llara adapt ARGS...


def test_adapt_writes_a_model_that_encode_loads(tiny_model_dir, corpus, tmp_path):
    out = tmp_path / "adapted"
    result = invoke("--corpus", corpus, "--model", tiny_model_dir, "--out", out, "--max-length", "48",
                    "--max-steps", "2", "--batch-size", "2", "--save-steps", "1")
    assert result.exit_code == 0, result.output
    assert "adapted" in result.stdout and str(out) in result.stdout
    assert "max_steps 2 (flag)" in result.stderr and "learning_rate 1e-05 (llara default)" in result.stderr
    assert LlaraConfig.load(out).stage == "adapted"
    chosen = LlaraConfig.load(out).query_prompt.value  # measured on the corpus's own pseudo-queries (auto)
    assert f"query prompt {chosen} (pseudo-query MRR@10 of" in result.stdout
    assert LlaraEncoder.load(str(out)).encode_passages(["river city"]).shape == (1, 64)
    records = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [record["step"] for record in records if record["event"] == "step"] == [1, 2]

    again = invoke("--corpus", corpus, "--model", tiny_model_dir, "--out", out, "--max-length", "48")
    assert again.exit_code == 2 and "--overwrite" in again.stderr
    replaced = invoke("--corpus", corpus, "--model", tiny_model_dir, "--out", out, "--max-length", "48",
                      "--max-steps", "1", "--batch-size", "2", "--query-prompt", "ebae", "--overwrite")
    assert replaced.exit_code == 0, replaced.output  # the choice file is llara's own: --overwrite replaces it
    assert LlaraConfig.load(out).query_prompt == "ebae" and "query prompt ebae (--query-prompt)" in replaced.stdout


@pytest.mark.parametrize(("args", "code", "message"), [
    (["--max-length", "10"], 2, "--max-length 10 is too short"),
    (["--format", "parquet"], 2, "unknown data format"),
    (["--query-prompt", "both"], 2, "unknown --query-prompt 'both'"),
    (["--scheduler", "exotic"], 2, "unknown --scheduler"),
    (["--resume", "--overwrite"], 2, "contradict"),
])
def test_bad_options_exit_with_one_line(tiny_model_dir, corpus, tmp_path, args, code, message):
    result = invoke("--corpus", corpus, "--model", tiny_model_dir, "--out", tmp_path / "out", *args)
    assert result.exit_code == code, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_missing_corpus(tiny_model_dir, tmp_path):
    result = invoke("--corpus", tmp_path / "nope.jsonl", "--model", tiny_model_dir, "--out", tmp_path / "out")
    assert result.exit_code == 2 and "no such file" in result.stderr


def test_paper_model_absent_fails_fast(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    result = invoke("--model", "llama-2-7b", "--corpus", corpus, "--out", tmp_path / "out", "--max-length", "1024")
    assert result.exit_code == 1
    assert "llama-2-7b" in result.stderr and "hf download meta-llama/Llama-2-7b-hf" in result.stderr


def test_help_shows_the_launch_recipes():
    result = CliRunner().invoke(app, ["adapt", "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "torchrun --nproc_per_node" in result.stdout and "deepspeed_zero3.yaml" in result.stdout


def test_an_interrupt_says_how_to_resume(tiny_model_dir, corpus, tmp_path, monkeypatch):
    import llara_cli.training.adapt as adapt_module

    def interrupted(config, on_log=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(adapt_module, "run_adaptation", interrupted)
    result = invoke("--corpus", corpus, "--model", tiny_model_dir, "--out", tmp_path / "out")
    assert result.exit_code == 130
    assert "interrupted" in result.stderr and "nothing to resume" in result.stderr


def test_adapt_prints_its_memory_plan(tiny_model_dir, corpus, tmp_path):
    result = invoke("--corpus", corpus, "--model", tiny_model_dir, "--out", tmp_path / "out", "--max-length", "48",
                    "--max-steps", "1", "--batch-size", "2")
    assert result.exit_code == 0, result.output
    assert "memory: estimated peak" in result.output and "whole batch in one pass" in result.output


def test_an_adaptation_that_cannot_fit_is_refused_before_loading_weights(tiny_model_dir, corpus, tmp_path,
                                                                         monkeypatch):
    import llara_cli.training.memory_plan as memory_plan

    monkeypatch.setattr(memory_plan, "available_memory_bytes", lambda: 1024 ** 2)  # a 1 MiB machine
    result = invoke("--corpus", corpus, "--model", tiny_model_dir, "--out", tmp_path / "out", "--max-length", "48",
                    "--max-steps", "1")
    assert result.exit_code == 2 and "--lora" in result.output and "--no-memory-check" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()
    kept = invoke("--corpus", corpus, "--model", tiny_model_dir, "--out", tmp_path / "out", "--max-length", "48",
                  "--max-steps", "1", "--batch-size", "2", "--no-memory-check")
    assert kept.exit_code == 0 and "GiB are available" in kept.output
