"""Issue #28: the Python API holds the CLI's rules: a batch size of 0, a NaN query vector and a NaN score are
refused with a UsageError, never a bare ValueError, an empty result or a run holding ``nan``."""
from __future__ import annotations

import math

import numpy as np
import pytest

from llara_cli.data.runs import write_run
from llara_cli.encode.encoder import LlaraEncoder
from llara_cli.errors import UsageError
from llara_cli.index.faiss_index import build_index, load_index
from llara_cli.search.dense import DenseSearcher
from llara_cli.search.faiss_search import search_index
from tests.cli.test_hardened_io import DIM, write_embeddings


@pytest.mark.parametrize("batch_size", [0, -1])
def test_a_batch_size_below_one_is_a_usage_error(tiny_model_dir, batch_size):
    encoder = LlaraEncoder.load(str(tiny_model_dir))
    with pytest.raises(UsageError, match=f"batch_size must be a positive integer, got {batch_size}"):
        encoder.encode_passages(["the cell"], batch_size=batch_size)


def test_a_dense_searcher_refuses_a_zero_batch_size(tmp_path):
    build_index([write_embeddings(tmp_path / "emb")], tmp_path / "index")
    with pytest.raises(UsageError, match="batch_size must be a positive integer, got 0"):
        DenseSearcher(tmp_path / "index", batch_size=0)


def test_a_nan_query_vector_is_refused_naming_the_query(tmp_path):
    build_index([write_embeddings(tmp_path / "emb")], tmp_path / "index")
    vectors = np.ones((2, DIM), dtype=np.float32)  # (n_queries, dim)
    vectors[1, 3] = np.nan
    with pytest.raises(UsageError, match=r"row 1 \(id q2\) holds NaN"):
        search_index(load_index(tmp_path / "index"), vectors, ["q1", "q2"], k=2)


@pytest.mark.parametrize("score", [math.nan, math.inf, -math.inf])
def test_write_run_refuses_a_non_finite_score(tmp_path, score):
    with pytest.raises(UsageError, match="for query q1, document d2 is not finite"):
        write_run(tmp_path / "run.trec", {"q1": [("d1", 1.0), ("d2", score)]})
    assert not list(tmp_path.iterdir())
