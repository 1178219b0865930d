"""The scale benchmark, the GPU check and the LoRA dropout timing run at tiny size here, so none can rot before a
big run."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from benchmarks.gpu.flex_mask import segment_mask_mod
from llara_cli.core.masks import allowed_attention
from llara_cli.core.prompts import Segment
from tests.conftest import REPO_ROOT

BENCHMARK_TIMEOUT_S = 600


def run_script(*arguments):
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    completed = subprocess.run([sys.executable, *map(str, arguments)], capture_output=True, text=True,
                               env=environment, timeout=BENCHMARK_TIMEOUT_S, cwd=REPO_ROOT)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed


def test_flex_mask_mod_allows_exactly_what_the_additive_mask_allows():
    segments = torch.tensor([
        [Segment.SHARED] * 3 + [Segment.FIRST_SUFFIX] * 2 + [Segment.SECOND_SUFFIX] * 2 + [Segment.PAD],
        [Segment.SHARED] * 2 + [Segment.FIRST_SUFFIX] * 2 + [Segment.SECOND_SUFFIX] * 2 + [Segment.PAD] * 2,
    ])  # (batch, seq)
    batch, seq = segments.shape
    b, q, k = torch.meshgrid(torch.arange(batch), torch.arange(seq), torch.arange(seq), indexing="ij")
    from_mask_mod = segment_mask_mod(segments)(b, torch.zeros_like(b), q, k)  # (batch, seq, seq)
    assert torch.equal(from_mask_mod, allowed_attention(segments))


@pytest.mark.slow
def test_scale_benchmark_quick_mode_measures_every_option(tmp_path):
    out = tmp_path / "scale.json"
    run_script("benchmarks/scale.py", "--quick", "--out", out, "--work-dir", tmp_path)
    result = json.loads(out.read_text())
    assert set(result["results"]) == {"flat", "sharded-flat", "flat-fp16", "flat-sq8", "ivfpq", "hnsw"}
    for option, measured in result["results"].items():
        assert "status" not in measured, (option, measured)
        assert measured["peak_rss_search_bytes"] > measured["baseline_rss_bytes"] > 0
        assert measured["bytes_on_disk"] > 0 and measured["qps"] > 0
    exact = result["results"]
    assert exact["sharded-flat"]["recall@100"] == exact["flat"]["recall@100"] == 1.0  # sharded search is exact
    assert exact["flat-sq8"]["bytes_on_disk"] < exact["flat-fp16"]["bytes_on_disk"] < exact["flat"]["bytes_on_disk"]
    projection = exact["flat"]["msmarco_4096_projection"]
    assert projection["bytes_per_vector"] == pytest.approx(4 * 4096, rel=0.01)  # dim-scaled from the measured bytes
    assert {"load_average_before", "load_average_after", "machine"} <= result.keys()
    assert not [path for path in tmp_path.iterdir() if path.name.startswith("llara-scale-")]  # scratch removed


@pytest.mark.slow
def test_gpu_check_dry_run_passes_on_cpu_and_writes_one_json(tmp_path):
    run_script("benchmarks/gpu/check.py", "--dry-run", "--out", tmp_path / "gpu_check.json")
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert result["dry_run"] and not result["ran_on_gpu"] and result["passed"]
    phases = result["phases"]
    assert set(phases) == {"model", "sdpa", "flex", "equivalence", "adapt_step", "encode"}
    assert phases["equivalence"]["equal"] and phases["flex"]["equal"]
    assert phases["sdpa"]["kernels"]["MATH"]["ok"] and phases["sdpa"]["chosen"]
    assert phases["adapt_step"]["joint_step_s"] > 0 and phases["encode"]["llara_tokens_per_s"] > 0


@pytest.mark.slow
def test_lora_dropout_benchmark_times_the_same_batch_with_and_without_dropout(tmp_path):
    run_script("benchmarks/lora_dropout_cost.py", "--tiny", "--repetitions", "1", "--name", tmp_path / "dropout")
    result = json.loads((tmp_path / "dropout.json").read_text())
    assert result["lora_dropout"] > 0  # finetuning's default, timed against none
    assert (result["query_tokens"], result["passage_tokens"]) == (32, 128)  # texts cut at the length limits
    assert result["step_seconds_with_dropout"] > 0 and result["step_seconds_without"] > 0
    assert result["speedup"] == pytest.approx(result["step_seconds_with_dropout"] / result["step_seconds_without"],
                                              rel=0.01)
    assert "machine" in result


@pytest.mark.slow
def test_scale_benchmark_compact_options_rescore_to_the_exact_top_10(tmp_path):
    out = tmp_path / "scale_compact.json"
    run_script("benchmarks/scale.py", "--quick", "--options", "flat,int8+rescore,binary,binary+rescore", "--out", out,
               "--work-dir", tmp_path)
    results = json.loads(out.read_text())["results"]
    for option in ("int8+rescore", "binary", "binary+rescore"):
        measured = results[option]
        assert "status" not in measured, (option, measured)
        assert measured["k"] == 10 and measured["qps_batch1"] > 0 and "recall@100" not in measured
    assert results["binary+rescore"]["store_bytes"] > 0 == results["binary"]["store_bytes"]
    assert results["binary"]["index_bytes"] < results["int8+rescore"]["index_bytes"] < results["flat"]["bytes_on_disk"]
    assert results["binary+rescore"]["recall@10"] > results["binary"]["recall@10"]
    assert results["int8+rescore"]["recall@10"] == 1.0
