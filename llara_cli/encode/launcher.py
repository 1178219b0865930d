"""Encoding under a launcher: ``torchrun --nproc-per-node N`` or ``accelerate launch`` start N copies of
``llara encode``; each reads its rank from the environment and encodes its own shard on its own device.

Rank ``i`` of ``N`` runs exactly what ``llara encode --shard-id i --shard-num N --out OUT/shard-00i`` runs
(:func:`~llara_cli.encode.directory.shard_range` gives the same contiguous rows), so the N shard directories
are bit-identical to the manual loop's, and ``llara index OUT`` takes the parent directory as the list of its
shards. No process group is needed: the ranks share nothing but the corpus file.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass

from llara_cli.encode.directory import EncodeJob
from llara_cli.encode.shards import shard_dir_name
from llara_cli.errors import UsageError

RANK_ENV, WORLD_SIZE_ENV, LOCAL_RANK_ENV = "RANK", "WORLD_SIZE", "LOCAL_RANK"  # set by torchrun and accelerate


@dataclass(frozen=True)
class LaunchedRank:
    rank: int
    world_size: int
    local_rank: int


def launched_rank(environ: Mapping[str, str] | None = None) -> LaunchedRank | None:
    """The rank this process was started as, or None when not under a launcher (or with one process)."""
    environ = os.environ if environ is None else environ
    if WORLD_SIZE_ENV not in environ:
        return None
    try:
        world_size = int(environ[WORLD_SIZE_ENV])
        rank = int(environ.get(RANK_ENV, "0"))
        local_rank = int(environ.get(LOCAL_RANK_ENV, str(rank)))
    except ValueError:
        raise UsageError(
            f"{RANK_ENV}/{WORLD_SIZE_ENV}/{LOCAL_RANK_ENV} must be integers, got "
            f"{environ.get(RANK_ENV)!r}/{environ.get(WORLD_SIZE_ENV)!r}/{environ.get(LOCAL_RANK_ENV)!r}"
        ) from None
    if world_size < 1 or not 0 <= rank < world_size or local_rank < 0:
        raise UsageError(f"launcher environment out of range: {RANK_ENV}={rank}, {WORLD_SIZE_ENV}={world_size}")
    return LaunchedRank(rank, world_size, local_rank) if world_size > 1 else None


def job_for_rank(job: EncodeJob, launched: LaunchedRank) -> EncodeJob:
    """``job`` narrowed to this rank's shard, written to ``out_dir/shard-<rank>``."""
    if job.shard_id != 0 or job.shard_num != 1:
        raise UsageError(
            f"--shard-id/--shard-num are set by the launcher (rank {launched.rank} of {launched.world_size}); "
            "drop them, or run without torchrun/accelerate"
        )
    return dataclasses.replace(job, shard_id=launched.rank, shard_num=launched.world_size,
                               out_dir=job.out_dir / shard_dir_name(launched.rank))


def device_for_rank(launched: LaunchedRank) -> str | None:
    """``cuda:<local rank>`` when this machine has GPUs, else None (the model's own device, the CPU)."""
    import torch

    if not torch.cuda.is_available():
        return None
    if launched.local_rank >= torch.cuda.device_count():
        raise UsageError(
            f"{LOCAL_RANK_ENV}={launched.local_rank} but only {torch.cuda.device_count()} GPU(s) are visible"
        )
    return f"cuda:{launched.local_rank}"


def encode_device(launched: LaunchedRank | None) -> str | None:
    """Where ``llara encode`` runs: this rank's GPU under a launcher, the first GPU of a single process on a
    machine that has one, else None (the CPU)."""
    if launched is not None:
        return device_for_rank(launched)
    import torch

    return "cuda" if torch.cuda.is_available() else None


def device_type_of(device: str | None) -> str:
    """``cuda`` for ``cuda`` / ``cuda:<n>``, ``cpu`` for None: the device kind the dtype is chosen for."""
    return device.split(":", 1)[0] if device else "cpu"
