"""``llara encode`` under torchrun: each rank encodes the shard the manual ``--shard-id`` loop would."""
from __future__ import annotations

import json

import numpy as np
import pytest

from llara_cli.core.prompts import Side
from llara_cli.encode.directory import EncodeJob
from llara_cli.encode.embedding_store import load_embeddings
from llara_cli.encode.launcher import LaunchedRank, job_for_rank, launched_rank
from llara_cli.errors import UsageError
from llara_cli.index.faiss_index import build_index, load_index
from tests.cli.conftest import invoke
from tests.training.run_helpers import run_llara_under_torchrun


def assert_same_embeddings(left_dir, right_dir):
    left, right = load_embeddings(left_dir), load_embeddings(right_dir)
    assert left.ids == right.ids
    assert np.array_equal(left.vectors, right.vectors)  # bit-identical
    assert (left.meta.shard_id, left.meta.shard_num) == (right.meta.shard_id, right.meta.shard_num)


def test_rank_comes_from_the_launcher_environment():
    assert launched_rank({}) is None
    assert launched_rank({"WORLD_SIZE": "1", "RANK": "0"}) is None  # one process: an ordinary run
    assert launched_rank({"WORLD_SIZE": "4", "RANK": "2", "LOCAL_RANK": "0"}) == LaunchedRank(2, 4, 0)
    assert launched_rank({"WORLD_SIZE": "2", "RANK": "1"}) == LaunchedRank(1, 2, 1)
    with pytest.raises(UsageError, match="must be integers"):
        launched_rank({"WORLD_SIZE": "two"})
    with pytest.raises(UsageError, match="out of range"):
        launched_rank({"WORLD_SIZE": "2", "RANK": "2"})


def test_a_rank_writes_its_shard_under_the_output_directory(tmp_path):
    job = EncodeJob(tmp_path / "c.jsonl", tmp_path / "emb", Side.PASSAGE, batch_size=4)
    ranked = job_for_rank(job, LaunchedRank(3, 8, 3))
    assert (ranked.shard_id, ranked.shard_num, ranked.out_dir) == (3, 8, tmp_path / "emb" / "shard-003")
    with pytest.raises(UsageError, match="set by the launcher"):
        job_for_rank(EncodeJob(tmp_path / "c.jsonl", tmp_path / "emb", Side.PASSAGE, batch_size=4, shard_num=2),
                     LaunchedRank(0, 2, 0))


def test_encode_with_a_launcher_rank_equals_the_manual_shard(corpus, tiny_model_dir, tmp_path, monkeypatch):
    manual = invoke("encode", corpus, "--model", tiny_model_dir, "--out", tmp_path / "manual", "--batch-size", 3,
                    "--shard-id", 1, "--shard-num", 3)
    assert manual.exit_code == 0, manual.output
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "1")
    launched = invoke("encode", corpus, "--model", tiny_model_dir, "--out", tmp_path / "launched", "--batch-size", 3)
    assert launched.exit_code == 0, launched.output
    assert f"-> {tmp_path / 'launched' / 'shard-001'}" in launched.output
    assert_same_embeddings(tmp_path / "launched" / "shard-001", tmp_path / "manual")


@pytest.mark.slow
def test_two_torchrun_processes_encode_what_the_manual_loop_and_one_process_encode(corpus, tiny_model_dir, tmp_path):
    common = ["encode", str(corpus), "--model", str(tiny_model_dir), "--batch-size", "1"]
    run_llara_under_torchrun([*common, "--out", str(tmp_path / "ddp")])
    assert sorted(path.name for path in (tmp_path / "ddp").iterdir()) == ["shard-000", "shard-001"]
    # The references run as one process each with the same one thread per process (CPU kernels may split
    # reductions differently at another thread count, which would change the last bits, not the sharding).
    for shard_id in range(2):
        run_llara_under_torchrun([*common, "--out", str(tmp_path / f"manual-{shard_id}"), "--shard-id", str(shard_id),
                                  "--shard-num", "2"], processes=1)
        assert_same_embeddings(tmp_path / "ddp" / f"shard-{shard_id:03d}", tmp_path / f"manual-{shard_id}")
    run_llara_under_torchrun([*common, "--out", str(tmp_path / "one")], processes=1)
    whole = load_embeddings(tmp_path / "one")
    shards = [load_embeddings(tmp_path / "ddp" / f"shard-{shard_id:03d}") for shard_id in range(2)]
    assert sum((shard.ids for shard in shards), []) == whole.ids
    assert np.array_equal(np.concatenate([shard.vectors for shard in shards]), whole.vectors)
    build_index([tmp_path / "ddp"], tmp_path / "index")  # the parent directory stands for its shards
    assert load_index(tmp_path / "index").doc_ids == whole.ids


def test_fp16_store_is_recorded_by_encode(corpus, tiny_model_dir, tmp_path):
    result = invoke("encode", corpus, "--model", tiny_model_dir, "--out", tmp_path / "half", "--store-dtype", "fp16")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "half" / "meta.json").read_text())["dtype"] == "float16"
    assert load_embeddings(tmp_path / "half").vectors.dtype == np.float16
    bad = invoke("encode", corpus, "--model", tiny_model_dir, "--out", tmp_path / "bad", "--store-dtype", "int8")
    assert bad.exit_code == 2 and "--store-dtype" in bad.output
