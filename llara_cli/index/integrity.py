"""What ``llara index`` checks so a damaged or mismatched index is never searched silently: a sha256 of each file
recorded in ``meta.json`` at build time and checked when the index is opened, and the query model's weights
fingerprint compared with the one the passages were encoded with."""
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from llara_cli.errors import UsageError

CHECKSUMS_KEY = "checksums"  # in meta.json: {file name: sha256}
HASH_CHUNK_BYTES = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def file_checksums(directory: Path, names: Iterable[str]) -> dict[str, str]:
    """``{name: sha256}`` of the files of ``directory`` that exist among ``names``."""
    return {name: file_sha256(directory / name) for name in names if (directory / name).is_file()}


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
        if file_sha256(path) != expected:
            raise UsageError(f"{path}: its content differs from what `llara index` wrote (sha256 recorded in "
                             "meta.json): the index is damaged or was edited; rebuild it with `llara index --overwrite`")


def check_weights_fingerprint(recorded: Mapping[str, Any], model: str, current: str, where: str | Path) -> None:
    """Refuse to encode queries with weights other than the passages': a model retrained in place."""
    from llara_cli.model.fingerprint import FINGERPRINT_KEY

    expected = recorded.get(FINGERPRINT_KEY)
    if isinstance(expected, str) and expected != current:
        raise UsageError(f"the weights of {model} changed since {where} was built: the passages were encoded with "
                         f"weights {expected}, the model now has {current} (retrained in place?); re-encode and "
                         "re-index, or search with the original weights")
