"""Projection of an index onto the corpus's principal directions (``llara index --pca DIM``).

The passages are projected onto the ``DIM`` leading eigenvectors of their *uncentred* second-moment matrix
(a truncated SVD, as LSA does), then L2-normalised; queries get the same projection at search time. No
centring and no scaling: the projection is orthogonal, so at ``DIM`` = the embedding dim it changes no inner
product and no ranking, and below it keeps the ``DIM`` directions that carry most of the passages' energy.

A plain prefix (``llara encode --dim``) keeps whichever dimensions come first, which only a Matryoshka-trained
model orders by importance, and a lightly trained one only partly: on SciFact (``benchmarks/matryoshka_effect.py``)
a quarter of the dims keeps 99.6 % of the full dim's nDCG@10 through this projection where the same model's
prefix keeps 90.5 %. Unlike whitening (:mod:`llara_cli.index.whitening`) it does not equalise the directions:
it changes how many numbers carry the embedding, not what the embedding means. Fitted on the passages only,
with no labels.

The kept directions are then turned by a fixed random rotation within their own subspace (faiss's ``PCAR``):
inner products in the subspace, so flat search, do not change, but every stored dimension gets a share of the
energy instead of the first few holding most of it, which binary codes (one sign bit a dimension) need. On
SciFact, at a quarter of the dims, a binary index's 500 candidates held 0.81 of the projected flat top 10
without the rotation and 0.975 with it.

The transform (a ``faiss.LinearTransform``, no bias) sits beside the index in the file ``pca``.
faiss and numpy are imported inside functions (the CLI imports this module).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llara_cli.errors import UsageError

if TYPE_CHECKING:
    import numpy as np

PCA_FILE = "pca"
PCA_PARAM = "pca"  # the key in an index's index_params: the projected dimension
ROTATION_SEED = 0  # the random rotation within the kept subspace: fixed, so one corpus gives one transform


def check_pca_dim(pca: int, dim: int, n_vectors: int) -> None:
    """UsageError unless ``pca`` directions can be estimated from ``n_vectors`` vectors of ``dim`` dims."""
    if pca < 1 or pca > dim:
        raise UsageError(f"--pca {pca}: must be between 1 and the embedding dim {dim}")
    if pca > n_vectors:
        raise UsageError(f"--pca {pca}: needs at least {pca} passages to estimate, the corpus has {n_vectors}")


def principal_directions(sample: np.ndarray, pca: int) -> np.ndarray:
    """``(pca, dim)`` float32: the leading eigenvectors of ``sample``'s uncentred second moment, one a row,
    by decreasing eigenvalue (computed in float64; each row's sign fixed so its largest entry is positive,
    so the same sample always gives the same transform)."""
    import numpy as np

    sample = np.asarray(sample, dtype=np.float64)  # (n, dim)
    eigenvalues, eigenvectors = np.linalg.eigh(sample.T @ sample)  # ascending; columns are eigenvectors
    top = eigenvectors[:, np.argsort(eigenvalues)[::-1][:pca]].T  # (pca, dim)
    signs = np.sign(top[np.arange(pca), np.argmax(np.abs(top), axis=1)])
    return np.ascontiguousarray(top * signs[:, None], dtype=np.float32)


def subspace_rotation(size: int, seed: int = ROTATION_SEED) -> np.ndarray:
    """A ``(size, size)`` random orthogonal matrix (Haar: QR of a Gaussian matrix, signs fixed), float64."""
    import numpy as np

    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((size, size)))
    return q * np.sign(np.diag(r))[None, :]


def fit_pca(sample: np.ndarray, pca: int) -> Any:
    """A trained ``faiss.LinearTransform`` from ``sample (n, dim)``'s dim to ``pca`` dims (no bias): the
    principal directions, turned by :func:`subspace_rotation` (rows orthonormal)."""
    import faiss
    import numpy as np

    check_pca_dim(pca, sample.shape[1], len(sample))
    directions = principal_directions(sample, pca)  # (pca, dim)
    directions = np.ascontiguousarray(subspace_rotation(pca).T @ directions, dtype=np.float32)  # (pca, dim)
    transform = faiss.LinearTransform(sample.shape[1], pca, False)
    faiss.copy_array_to_vector(directions.ravel(), transform.A)
    transform.is_trained = True
    return transform
