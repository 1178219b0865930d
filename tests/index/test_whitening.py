"""Whitened indexes (`llara index --whiten`): the transform fitted on the passages, applied to queries too."""
from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from llara_cli.cli.app import app
from llara_cli.encode.embedding_store import EmbeddingMeta, save_embeddings
from llara_cli.errors import UsageError
from llara_cli.index.faiss_index import build_index, load_index
from llara_cli.index.faiss_types import IndexType
from llara_cli.index.whitening import WHITENING_FILE
from llara_cli.search.faiss_search import search_index

DIM = 24
WHITEN = 12
N_DOCS = 800
N_QUERIES = 40
K = 10
SHARED_WEIGHT = 3.0  # a direction every vector shares: the anisotropy whitening removes


def anisotropic(count, seed):
    """Unit vectors dominated by one shared direction, with a few strong and many weak others."""
    rng = np.random.default_rng(seed)
    scales = np.linspace(2.0, 0.1, DIM).astype(np.float32)
    vectors = rng.standard_normal((count, DIM)).astype(np.float32) * scales
    vectors[:, 0] += SHARED_WEIGHT * (1 + 0.05 * rng.standard_normal(count).astype(np.float32))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def meta(count=N_DOCS):
    return EmbeddingMeta(model="tiny", prompt_family="paper", pooling="last", side="passage", dim=DIM,
                         max_length=64, normalize=True, count=count, source_sha256="abc")


def reference_whitening(docs, vectors, whiten):
    """numpy BERT-whitening: centre on the passages' mean, project on the top components, unit variance, L2."""
    mean = docs.mean(axis=0)
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov((docs - mean).T, bias=True))
    top = np.argsort(eigenvalues)[::-1][:whiten]
    projected = (vectors - mean) @ (eigenvectors[:, top] / np.sqrt(eigenvalues[top]))
    return projected / np.linalg.norm(projected, axis=1, keepdims=True)


def assert_scored_as(results, expected, query_ids, atol, top_is_best=True):
    """Each query's hits (doc ids ``d<row>``) carry the scores of ``expected`` (queries x docs) within ``atol``;
    with ``top_is_best`` its first hit is the expected best document."""
    for row, query_id in enumerate(query_ids):
        found = [(int(doc_id[1:]), score) for doc_id, score in results[query_id]]
        np.testing.assert_allclose([score for _, score in found], expected[row, [doc for doc, _ in found]], atol=atol)
        if top_is_best:
            assert found[0][0] == int(np.argmax(expected[row]))


@pytest.fixture()
def embeddings(tmp_path):
    docs = anisotropic(N_DOCS, seed=0)
    save_embeddings(tmp_path / "emb", [f"d{index}" for index in range(N_DOCS)], docs, meta())
    return tmp_path, docs


def test_whitened_index_ranks_as_numpy_whitening_of_passages_and_queries(embeddings):
    root, docs = embeddings
    build_index([root / "emb"], root / "white", whiten=WHITEN)
    index = load_index(root / "white")
    queries = anisotropic(N_QUERIES, seed=1)
    query_ids = [f"q{index}" for index in range(N_QUERIES)]
    results = search_index(index, queries, query_ids, k=K)
    expected = reference_whitening(docs, queries, WHITEN) @ reference_whitening(docs, docs, WHITEN).T
    assert_scored_as(results, expected, query_ids, atol=1e-4)
    build_index([root / "emb"], root / "plain")
    unwhitened = search_index(load_index(root / "plain"), queries, query_ids, k=K)
    assert any(results[q][0][0] != unwhitened[q][0][0] for q in query_ids)  # it changes the ranking


def test_whitened_index_records_its_dimension_and_takes_embedding_sized_queries(embeddings):
    root, _docs = embeddings
    meta_written = build_index([root / "emb"], root / "white", IndexType.HNSW, whiten=WHITEN)
    assert meta_written.params["whiten"] == WHITEN
    assert (root / "white" / WHITENING_FILE).is_file()
    index = load_index(root / "white")
    assert (index.dim, index.faiss_index.d) == (DIM, WHITEN)
    with pytest.raises(UsageError, match=f"dim {WHITEN - 1} but the index"):
        search_index(index, np.zeros((1, WHITEN - 1), dtype=np.float32), ["q"], k=K)


@pytest.mark.parametrize("whiten, message", [(DIM + 1, "between 1 and the embedding dim"),
                                             (0, "between 1 and the embedding dim")])
def test_whitening_dimension_out_of_range_is_refused(embeddings, whiten, message):
    root, _docs = embeddings
    with pytest.raises(UsageError, match=message):
        build_index([root / "emb"], root / "white", whiten=whiten)
    assert not (root / "white").exists()


def test_whitening_a_partial_index_is_refused(embeddings):
    root, _docs = embeddings
    with pytest.raises(UsageError, match="--partial"):
        build_index([root / "emb"], root / "white", whiten=WHITEN, partial=True)


def test_whitened_index_without_its_transform_is_refused_on_load(embeddings):
    root, _docs = embeddings
    build_index([root / "emb"], root / "white", whiten=WHITEN)
    (root / "white" / WHITENING_FILE).unlink()
    with pytest.raises(UsageError, match=f"{WHITENING_FILE} is missing"):
        load_index(root / "white")


def test_index_cli_whitens_and_says_so(embeddings):
    root, _docs = embeddings
    result = CliRunner().invoke(app, ["index", str(root / "emb"), "--out", str(root / "white"),
                                      "--whiten", str(WHITEN)])
    assert result.exit_code == 0, result.output
    assert f"whitened to {WHITEN}" in result.output
    assert json.loads((root / "white" / "meta.json").read_text())["index_params"]["whiten"] == WHITEN
