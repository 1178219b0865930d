"""Shard directories: how a sharded encode names them, and a parent directory standing for its shards.

``llara encode`` under torchrun/accelerate writes rank ``i`` of ``N`` to ``OUT/shard-00i`` (``SHARD_DIR_FORMAT``);
``llara index`` and ``llara search --index`` accept such a parent directory wherever they accept a list of
shard directories. A directory is a shard when it holds ``meta.json``; one without it whose subdirectories do
is a parent, expanded to those subdirectories in name order.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

META_FILE = "meta.json"  # the completion marker of an embedding set and of an index
SHARD_DIR_FORMAT = "shard-{shard_id:03d}"


def shard_dir_name(shard_id: int) -> str:
    return SHARD_DIR_FORMAT.format(shard_id=shard_id)


def expand_shard_dirs(paths: Sequence[Path]) -> list[Path]:
    """``paths`` with every parent directory of shards replaced by its shard directories (name order).

    A path that is neither a shard nor a parent of shards is kept as is, so the caller's loader reports it
    (an interrupted encode, a missing directory).
    """
    expanded: list[Path] = []
    for path in paths:
        if path.is_dir() and not (path / META_FILE).exists():
            children = sorted(child for child in path.iterdir() if child.is_dir() and (child / META_FILE).is_file())
            if children:
                expanded.extend(children)
                continue
        expanded.append(path)
    return expanded
