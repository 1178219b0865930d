"""What ``llara index`` checks so a damaged or mismatched index is never searched silently: a digest of each file
recorded in ``meta.json`` at build time and checked when the index is opened, and the query model's weights
fingerprint compared with the one the passages were encoded with.

A file up to ``FULL_HASH_MAX_BYTES`` gets a sha256 of its whole content; a larger one (the ``index`` of a large
corpus, read on every open of every shard) a digest of its size and ``SAMPLES`` evenly spaced ``SAMPLE_BYTES``
slices, recorded as ``sampled:<hex>``: it catches a truncated, replaced or rebuilt file for ~1 MiB read, not a
single flipped byte between two samples (hashing a 145 GB index on each open would cost as much as reading it).
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from llara_cli.errors import UsageError
from llara_cli.storage.files import file_sha256

CHECKSUMS_KEY = "checksums"  # in meta.json: {file name: sha256 hex, or "sampled:" + hex for a large file}
FULL_HASH_MAX_BYTES = 64 << 20
SAMPLED_PREFIX = "sampled:"
SAMPLES = 16
SAMPLE_BYTES = 64 << 10


def sampled_sha256(path: Path) -> str:
    """sha256 of the file's size and ``SAMPLES`` evenly spaced ``SAMPLE_BYTES`` slices (first and last included)."""
    size = path.stat().st_size
    digest = hashlib.sha256(f"{size}\0".encode())
    with open(path, "rb") as handle:
        for sample in range(SAMPLES):
            handle.seek((size - SAMPLE_BYTES) * sample // (SAMPLES - 1))
            digest.update(handle.read(SAMPLE_BYTES))
    return digest.hexdigest()


def file_digest(path: Path) -> str:
    """The digest ``meta.json`` records for ``path``: a full sha256, or a sampled one past ``FULL_HASH_MAX_BYTES``."""
    if path.stat().st_size <= FULL_HASH_MAX_BYTES:
        return file_sha256(path)
    return SAMPLED_PREFIX + sampled_sha256(path)


def file_checksums(directory: Path, names: Iterable[str]) -> dict[str, str]:
    """``{name: digest}`` of the files of ``directory`` that exist among ``names``."""
    return {name: file_digest(directory / name) for name in names if (directory / name).is_file()}


def check_checksums(directory: Path, extra: Mapping[str, Any]) -> None:
    """Refuse an index whose files differ from what the build recorded (an index built before checksums were
    recorded has none to check)."""
    recorded = extra.get(CHECKSUMS_KEY)
    if not isinstance(recorded, dict):
        return
    for name, expected in sorted(recorded.items()):
        path = directory / name
        if not path.is_file():
            raise UsageError(f"{path}: missing (the index is damaged): rebuild it with `llara index --overwrite`")
        sampled = isinstance(expected, str) and expected.startswith(SAMPLED_PREFIX)
        actual = SAMPLED_PREFIX + sampled_sha256(path) if sampled else file_sha256(path)
        if actual != expected:
            raise UsageError(f"{path}: its content differs from what `llara index` wrote (digest recorded in "
                             "meta.json): the index is damaged or was edited; rebuild it with `llara index --overwrite`")


def check_weights_fingerprint(recorded: Mapping[str, Any], model: str, current: str, where: str | Path) -> None:
    """Refuse to encode queries with weights other than the passages': a model retrained in place."""
    from llara_cli.model.fingerprint import FINGERPRINT_KEY

    expected = recorded.get(FINGERPRINT_KEY)
    if isinstance(expected, str) and expected != current:
        raise UsageError(f"the weights of {model} changed since {where} was built: the passages were encoded with "
                         f"weights {expected}, the model now has {current} (retrained in place?); re-encode and "
                         "re-index, or search with the original weights")
