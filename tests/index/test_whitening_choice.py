"""Whether to whiten, chosen without labels: pseudo-queries finding their own documents, anisotropy, the CLI."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
from typer.testing import CliRunner

from llara_cli.cli.app import app
from llara_cli.errors import UsageError
from llara_cli.index.whitening_choice import (
    anisotropy,
    choose_whitening,
    self_retrieval_mrr,
)
from tests.conftest import WORDS

DIM = 24
N = 400


def unit(vectors):
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def test_self_retrieval_mrr_counts_the_own_passages_rank():
    passages = np.eye(3, dtype=np.float32)
    queries = np.array([[1.0, 0.0, 0.0], [0.9, 0.1, 0.0]], dtype=np.float32)
    assert self_retrieval_mrr(queries, passages, [0, 1]) == pytest.approx((1 + 1 / 2) / 2)
    assert self_retrieval_mrr(queries, passages, [0, 1], depth=1) == pytest.approx(0.5)


def test_anisotropy_is_high_for_a_shared_direction_and_low_without():
    rng = np.random.default_rng(0)
    isotropic = unit(rng.standard_normal((300, DIM)))
    shared = isotropic + 3.0 * np.eye(DIM, dtype=np.float32)[0]
    assert anisotropy(isotropic) < 0.05 and anisotropy(unit(shared)) > 0.8


def test_whitening_is_chosen_where_a_shared_direction_drowns_the_signal():
    rng = np.random.default_rng(1)
    scales = np.linspace(2.0, 0.1, DIM).astype(np.float32)
    base = rng.standard_normal((N, DIM)).astype(np.float32) * scales
    shared = np.zeros(DIM, dtype=np.float32)
    shared[0] = 6.0
    passages = unit(base + shared * (1 + 0.3 * rng.standard_normal((N, 1)).astype(np.float32)))
    queries = unit(base[:100] + 0.4 * rng.standard_normal((100, DIM)).astype(np.float32) * scales
                   + shared * (1 + 0.3 * rng.standard_normal((100, 1)).astype(np.float32)))
    choice = choose_whitening(passages, queries, list(range(100)), candidates=(16, 20))
    assert choice.dim in (16, 20) and choice.scores[str(choice.dim)] > choice.scores["none"]
    assert "whiten to" in choice.describe()


def test_no_whitening_where_the_signal_lives_in_low_variance_directions():
    rng = np.random.default_rng(2)
    clusters = rng.standard_normal((40, 12)).astype(np.float32) * 3.0  # high variance, shared by 10 documents
    strong = clusters[np.arange(N) % 40]
    identity = rng.standard_normal((N, 12)).astype(np.float32) * 0.5  # low variance, all the identity
    passages = unit(np.hstack([strong + 0.1 * rng.standard_normal((N, 12)), identity]))
    queries = unit(np.hstack([strong[:100] + 0.1 * rng.standard_normal((100, 12)),
                              identity[:100] + 0.05 * rng.standard_normal((100, 12))]))
    choice = choose_whitening(passages, queries, list(range(100)), candidates=(8,))
    assert choice.dim is None and choice.scores["none"] > choice.scores["8"]
    with pytest.raises(UsageError, match="pseudo-queries"):
        choose_whitening(passages, queries[:0], [])


def test_index_cli_whiten_auto_decides_on_the_corpus_pseudo_queries(tiny_model_dir, tmp_path):
    rng = random.Random(0)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"_id": f"d{index}", "title": " ".join(rng.choice(WORDS) for _ in range(4)),
                                          "text": " ".join(rng.choice(WORDS) for _ in range(30))}) + "\n"
                              for index in range(80)))
    runner = CliRunner()
    result = runner.invoke(app, ["encode", str(corpus), "--model", str(tiny_model_dir), "--out", str(tmp_path / "emb")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["index", str(tmp_path / "emb"), "--out", str(tmp_path / "index"), "--whiten", "auto"])
    assert result.exit_code == 2 and "--corpus" in result.output
    result = runner.invoke(app, ["index", str(tmp_path / "emb"), "--out", str(tmp_path / "index"), "--whiten", "x"])
    assert result.exit_code == 2 and "dimension or auto" in result.output
    result = runner.invoke(app, ["index", str(tmp_path / "emb"), "--out", str(tmp_path / "index"), "--whiten", "auto",
                                 "--corpus", str(corpus)])
    assert result.exit_code == 0, result.output
    assert "--whiten auto:" in result.output and "pseudo-query MRR@10 over 80" in result.output
    params = json.loads((tmp_path / "index" / "meta.json").read_text())["index_params"]
    whitened = "whitened to" in result.output.splitlines()[-1]
    assert ("whiten" in params) == whitened
