from __future__ import annotations

import functools

import numpy as np
import pytest
from typer.testing import CliRunner

from llara_cli.cli.app import app
from llara_cli.encode.embedding_store import EmbeddingMeta, save_embeddings
from llara_cli.index.faiss_index import DOCID_FILE, INDEX_FILE, load_index
from tests.cli.conftest import invoke as invoke_llara

DIM = 8
N_DOCS = 40


def write_shard(directory, start, stop, shard_id, shard_num, **overrides):
    dim = overrides.pop("dim", DIM)
    vectors = np.random.default_rng(shard_id).standard_normal((stop - start, dim)).astype(np.float32)
    meta = EmbeddingMeta(**{
        **dict(model="tiny", prompt_family="paper", pooling="last8", side="passage", dim=dim, max_length=64,
               normalize=True, count=stop - start, source_sha256="abc", shard_id=shard_id, shard_num=shard_num),
        **overrides,
    })
    save_embeddings(directory, [f"d{index}" for index in range(start, stop)], vectors, meta)
    return str(directory)


@pytest.fixture
def shards(tmp_path):
    return [write_shard(tmp_path / "s0", 0, 25, 0, 2), write_shard(tmp_path / "s1", 25, N_DOCS, 1, 2)]


invoke = functools.partial(invoke_llara, "index")  # llara index ARGS...


def test_flat_index_is_written_with_a_one_line_summary(tmp_path, shards):
    result = invoke(*shards, "--out", tmp_path / "index")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "index" / INDEX_FILE).is_file() and (tmp_path / "index" / DOCID_FILE).is_file()
    assert result.stdout.strip() == f"indexed {N_DOCS} vectors of dim {DIM} (flat) in {tmp_path / 'index'}"


def test_hnsw_options_reach_the_index(tmp_path, shards):
    result = invoke(*shards, "--out", tmp_path / "index", "--type", "hnsw", "--hnsw-m", 8, "--ef-search", 50)
    assert result.exit_code == 0, result.output
    index = load_index(tmp_path / "index")
    assert index.meta.params == {"hnsw_m": 8, "ef_construction": 200, "ef_search": 50}
    assert index.faiss_index.hnsw.efSearch == 50


def test_mismatched_shards_exit_2_with_one_line(tmp_path):
    first = write_shard(tmp_path / "s0", 0, 20, 0, 2)
    second = write_shard(tmp_path / "s1", 20, 40, 1, 2, dim=DIM * 2)
    result = invoke(first, second, "--out", tmp_path / "index")
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert result.stderr.count("\n") == 1 and f"dim {DIM} vs {DIM * 2}" in result.stderr
    assert not (tmp_path / "index").exists()


def test_existing_output_exits_2_unless_overwrite(tmp_path, shards):
    assert invoke(*shards, "--out", tmp_path / "index").exit_code == 0
    result = invoke(*shards, "--out", tmp_path / "index", "--type", "ivfpq")
    assert result.exit_code == 2 and "--overwrite" in result.stderr
    assert invoke(*shards, "--out", tmp_path / "index", "--type", "ivfpq", "--pq-m", 4, "--overwrite").exit_code == 0
    assert load_index(tmp_path / "index").meta.params["pq_m"] == 4


def test_help_shows_an_example():
    result = CliRunner().invoke(app, ["index", "--help"])
    assert result.exit_code == 0 and "Example: llara index" in result.stdout
