"""Projected indexes (`llara index --pca`): passages and queries on the corpus's principal directions."""
from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from llara_cli.cli.app import app
from llara_cli.encode.embedding_store import save_embeddings
from llara_cli.errors import UsageError
from llara_cli.index.faiss_index import build_index, load_index
from llara_cli.index.faiss_types import IndexType
from llara_cli.index.pca import PCA_FILE
from llara_cli.search.faiss_search import search_index
from tests.index.test_whitening import DIM, N_DOCS, N_QUERIES, anisotropic, assert_scored_as, meta

PCA = 6
K = 10


def reference_projection(docs, vectors, dims):
    """numpy truncated SVD: the top right singular vectors of the (uncentred) passage matrix, then L2."""
    _, _, right = np.linalg.svd(docs.astype(np.float64), full_matrices=False)
    projected = vectors @ right[:dims].T
    return projected / np.linalg.norm(projected, axis=1, keepdims=True)


@pytest.fixture()
def embeddings(tmp_path):
    docs = anisotropic(N_DOCS, seed=0)
    save_embeddings(tmp_path / "emb", [f"d{index}" for index in range(N_DOCS)], docs, meta())
    queries = anisotropic(N_QUERIES, seed=1)
    return tmp_path, docs, queries, [f"q{index}" for index in range(N_QUERIES)]


def test_projection_to_the_full_dim_changes_no_score(embeddings):
    root, _docs, queries, query_ids = embeddings
    build_index([root / "emb"], root / "rotated", pca=DIM)
    build_index([root / "emb"], root / "plain")
    rotated = search_index(load_index(root / "rotated"), queries, query_ids, k=K)
    plain = search_index(load_index(root / "plain"), queries, query_ids, k=K)
    for query_id in query_ids:
        assert [doc for doc, _ in rotated[query_id]] == [doc for doc, _ in plain[query_id]]
        np.testing.assert_allclose([score for _, score in rotated[query_id]],
                                   [score for _, score in plain[query_id]], atol=1e-5)


def test_projected_index_ranks_as_numpy_truncated_svd_of_passages_and_queries(embeddings):
    root, docs, queries, query_ids = embeddings
    build_index([root / "emb"], root / "projected", pca=PCA)
    index = load_index(root / "projected")
    assert (index.dim, index.faiss_index.d) == (DIM, PCA)
    results = search_index(index, queries, query_ids, k=K)
    expected = reference_projection(docs, queries, PCA) @ reference_projection(docs, docs, PCA).T
    assert_scored_as(results, expected, query_ids, atol=1e-4)


def test_projection_keeps_more_than_the_prefix_of_the_same_size(embeddings):
    """The test vectors put their strongest directions anywhere but first: a prefix of PCA dims loses them."""
    root, docs, queries, query_ids = embeddings
    permutation = np.random.default_rng(2).permutation(DIM)
    save_embeddings(root / "shuffled", [f"d{index}" for index in range(N_DOCS)], docs[:, permutation], meta())
    build_index([root / "shuffled"], root / "projected", pca=PCA)
    exact = queries[:, permutation] @ docs[:, permutation].T  # (queries, docs): the full-dim scores
    top = {query_id: int(np.argmax(exact[row])) for row, query_id in enumerate(query_ids)}
    projected = search_index(load_index(root / "projected"), queries[:, permutation], query_ids, k=1)
    prefix_docs = docs[:, permutation][:, :PCA] / np.linalg.norm(docs[:, permutation][:, :PCA], axis=1, keepdims=True)
    prefix_scores = queries[:, permutation][:, :PCA] @ prefix_docs.T
    projected_hits = sum(int(projected[q][0][0][1:]) == top[q] for q in query_ids)
    prefix_hits = sum(int(np.argmax(prefix_scores[row])) == top[q] for row, q in enumerate(query_ids))
    assert projected_hits > prefix_hits


def test_binary_projected_index_rescores_with_projected_floats(embeddings):
    root, docs, queries, query_ids = embeddings
    build_index([root / "emb"], root / "binary", IndexType.BINARY, pca=PCA)
    index = load_index(root / "binary")
    assert index.rescore_vectors.shape == (N_DOCS, PCA)
    results = search_index(index, queries, query_ids, k=K, rescore_factor=None)
    expected = reference_projection(docs, queries, PCA) @ reference_projection(docs, docs, PCA).T
    assert_scored_as(results, expected, query_ids, atol=1e-3, top_is_best=False)


@pytest.mark.parametrize("options, message", [
    ({"pca": DIM + 1}, "between 1 and the embedding dim"),
    ({"pca": 0}, "between 1 and the embedding dim"),
    ({"pca": PCA, "whiten": PCA}, "give one"),
    ({"pca": PCA, "partial": True}, "--partial"),
])
def test_bad_projection_options_are_refused_and_nothing_is_written(embeddings, options, message):
    root, *_ = embeddings
    with pytest.raises(UsageError, match=message):
        build_index([root / "emb"], root / "projected", **options)
    assert not (root / "projected").exists()


def test_projected_index_without_its_transform_is_refused_on_load(embeddings):
    root, *_ = embeddings
    build_index([root / "emb"], root / "projected", pca=PCA)
    (root / "projected" / PCA_FILE).unlink()
    with pytest.raises(UsageError, match=f"projected \\(--pca\\) but {PCA_FILE} is missing"):
        load_index(root / "projected")


def test_index_cli_projects_and_records_the_dim(embeddings):
    root, *_ = embeddings
    result = CliRunner().invoke(app, ["index", str(root / "emb"), "--out", str(root / "projected"),
                                      "--pca", str(PCA)])
    assert result.exit_code == 0, result.output
    assert f"projected to {PCA}" in result.output
    assert json.loads((root / "projected" / "meta.json").read_text())["index_params"]["pca"] == PCA
    again = CliRunner().invoke(app, ["index", str(root / "emb"), "--out", str(root / "projected"),
                                     "--pca", str(PCA), "--overwrite"])
    assert again.exit_code == 0, again.output  # its own transform file is llara's to replace


def test_projected_dimensions_share_the_energy_that_the_top_principal_direction_holds_alone(embeddings):
    """Binary codes spend one bit a stored dimension: the random turn within the subspace spreads the energy
    the first principal direction would otherwise hold (the shared direction of these vectors)."""
    root, docs, *_ = embeddings
    build_index([root / "emb"], root / "projected", pca=PCA)
    stored = load_index(root / "projected").rescore_vectors  # absent: a flat index keeps no store
    assert stored is None
    transform = load_index(root / "projected").transform
    projected = transform.apply(np.ascontiguousarray(docs))  # (n, PCA): the stored dims before L2 norm
    shares = (projected ** 2).sum(axis=0) / (projected ** 2).sum()
    singular = np.linalg.svd(docs.astype(np.float64), compute_uv=False)
    top_share = singular[0] ** 2 / (singular[:PCA] ** 2).sum()
    assert shares.max() < 0.8 * top_share  # unturned, the first stored dim holds top_share itself
    rows = faiss_matrix(transform)  # (PCA, DIM): still an orthonormal basis of the principal subspace
    np.testing.assert_allclose(rows @ rows.T, np.eye(PCA), atol=1e-5)


def faiss_matrix(transform):
    import faiss

    return faiss.vector_to_array(transform.A).reshape(transform.d_out, transform.d_in)


def test_an_engine_export_refuses_pca_before_writing_anything(embeddings):
    root, *_ = embeddings
    result = CliRunner().invoke(app, ["index", str(root / "emb"), "--out", str(root / "parquet"),
                                      "--engine", "parquet", "--pca", str(PCA)])
    assert result.exit_code == 2
    assert "--pca are faiss options" in result.output
    assert not (root / "parquet").exists()
