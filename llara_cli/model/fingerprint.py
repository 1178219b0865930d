"""A fingerprint of a model's weights, recorded with embeddings and indexes so that queries are never encoded
with other weights than the passages (a model retrained in place keeps its path, not its fingerprint).

It digests, for every weight file of the model (and of each adapter on top of it), its name, its size and
``SAMPLES`` evenly spaced ``SAMPLE_BYTES`` slices of its content: about 1 MiB read per file, whatever its size,
so searching a 7B model's index does not hash 14 GB. Retraining changes every tensor, so it changes the digest;
a single flipped byte between two samples would not (that is not what it guards against).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from llara_cli.model.files import is_peft_adapter_dir

FINGERPRINT_KEY = "weights_fingerprint"  # its name in meta.json
WEIGHT_FILE_PATTERNS = ("*.safetensors", "*.bin", "*.gguf")
SAMPLES = 16
SAMPLE_BYTES = 64 * 1024
FINGERPRINT_CHARS = 16
MAX_ADAPTER_DEPTH = 8


def _file_digest(path: Path, digest: "hashlib._Hash") -> None:  # noqa: UP037 - hashlib has no public type
    size = path.stat().st_size
    digest.update(f"{path.name}\0{size}\0".encode())
    with open(path, "rb") as handle:
        if size <= SAMPLES * SAMPLE_BYTES:
            digest.update(handle.read())
            return
        for sample in range(SAMPLES):
            handle.seek((size - SAMPLE_BYTES) * sample // (SAMPLES - 1))
            digest.update(handle.read(SAMPLE_BYTES))


def weight_directories(model: str) -> list[Path]:
    """The directories holding the weights of ``model``: its adapters (outermost first), then the base model."""
    from llara_cli.model.adapters import adapter_base_model
    from llara_cli.model.resolve import resolve_model

    directories: list[Path] = []
    reference = model
    while is_peft_adapter_dir(reference) and len(directories) < MAX_ADAPTER_DEPTH:
        directories.append(Path(reference).expanduser())
        reference = adapter_base_model(reference)
    directories.append(resolve_model(reference))
    return directories


def weights_fingerprint(model: str) -> str:
    """A short hex digest of the weights ``model`` loads (adapters included)."""
    digest = hashlib.sha256()
    for directory in weight_directories(model):
        for path in sorted({path for pattern in WEIGHT_FILE_PATTERNS for path in directory.glob(pattern)}):
            if path.is_file():
                _file_digest(path, digest)
        digest.update(os.sep.encode())
    return digest.hexdigest()[:FINGERPRINT_CHARS]
