"""Whitening of an index: PCA fitted on the corpus's passage embeddings, every kept component scaled to unit
variance, then L2 normalisation (BERT-whitening, Su et al. 2021, arXiv 2103.15316).

Embeddings of a small, lightly adapted decoder are anisotropic (mean pairwise cosine 0.85-0.9 on SciFact,
CACM and Cranfield): a few directions shared by every text dominate the inner product. Whitening removes
the corpus mean and equalises the directions' variance. It is fitted on passages only, with no labels, and
the same transform is applied to queries at search time. A ``llara index --whiten DIM`` index stores vectors of
``DIM`` dimensions. The transform sits beside them in the index directory (``whitening``, written by
``faiss.write_VectorTransform``).

faiss and numpy are imported inside functions (the CLI imports this module).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from llara_cli.errors import UsageError

if TYPE_CHECKING:
    import numpy as np

WHITENING_FILE = "whitening"
WHITENING_PARAM = "whiten"  # the key in an index's index_params: the whitened dimension
WHITENING_EIGEN_POWER = -0.5  # PCA components divided by sqrt(eigenvalue): unit variance each
WHITENING_EPSILON = 1e-6  # added to the eigenvalues: a direction the corpus never varies in stays finite


def check_whitening_dim(whiten: int, dim: int, n_vectors: int) -> None:
    """UsageError unless ``whiten`` components can be estimated from ``n_vectors`` vectors of ``dim`` dims."""
    if whiten < 1 or whiten > dim:
        raise UsageError(f"--whiten {whiten}: must be between 1 and the embedding dim {dim}")
    if whiten >= n_vectors:
        raise UsageError(f"--whiten {whiten}: needs more than {whiten} passages to estimate, the corpus has {n_vectors}")


def fit_whitening(sample: np.ndarray, whiten: int) -> Any:
    """A trained ``faiss.PCAMatrix`` from ``sample (n, dim)`` (float32) to ``whiten`` whitened dimensions."""
    import faiss
    import numpy as np

    check_whitening_dim(whiten, sample.shape[1], len(sample))
    transform = faiss.PCAMatrix(sample.shape[1], whiten, WHITENING_EIGEN_POWER)
    transform.epsilon = WHITENING_EPSILON
    transform.train(np.ascontiguousarray(sample, dtype=np.float32))
    return transform


def apply_whitening(transform: Any, vectors: np.ndarray) -> np.ndarray:
    """``vectors (n, dim)`` whitened and L2-normalised: ``(n, whiten)`` float32."""
    import faiss
    import numpy as np

    whitened = transform.apply(np.ascontiguousarray(vectors, dtype=np.float32))  # (n, whiten)
    faiss.normalize_L2(whitened)
    return whitened


def save_whitening(transform: Any, directory: Path, file_name: str = WHITENING_FILE) -> None:
    """Write any faiss transform of an index (whitening, or ``--pca``'s projection under its own file name)."""
    import faiss

    faiss.write_VectorTransform(transform, str(directory / file_name))


def load_whitening(directory: Path, dim_in: int, dim_out: int, file_name: str = WHITENING_FILE,
                   said: str = "whitened") -> Any:
    """The index's transform (``file_name``; ``said``: what meta.json says the index is); UsageError if it is
    missing or does not map ``dim_in`` to ``dim_out``."""
    import faiss

    path = directory / file_name
    if not path.is_file():
        raise UsageError(f"{directory}: meta.json says the index is {said} but {file_name} is missing")
    try:
        transform = faiss.read_VectorTransform(str(path))
    except RuntimeError as error:
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise UsageError(f"{path}: not a readable faiss transform ({reason})") from None
    if (transform.d_in, transform.d_out) != (dim_in, dim_out):
        raise UsageError(f"{path}: maps {transform.d_in} to {transform.d_out} dims, the index needs {dim_in} to {dim_out}")
    return transform
