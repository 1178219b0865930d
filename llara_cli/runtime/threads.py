"""One thread budget for torch, faiss (OpenMP) and the tokenizers' Rust pool: the cores this process may use.

:func:`configure_threads` is called once per command (the CLI root does it; benchmarks too). The budget is
``$OMP_NUM_THREADS`` when the user set it, else the CPUs of the process' affinity mask capped by the cgroup CPU
quota (``cpu.max``, a container's ``--cpus``), divided among the processes of a ``torchrun`` node. torch, faiss
and tokenizers never run at the same time inside a command, so each may use the whole budget; what must not
happen is each sizing its pool from the host's core count (64 threads on a 2-CPU container).
"""
from __future__ import annotations

import logging
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

OMP_ENV = "OMP_NUM_THREADS"
MKL_ENV = "MKL_NUM_THREADS"
RAYON_ENV = "RAYON_NUM_THREADS"  # the Rust thread pool of Hugging Face tokenizers
TOKENIZERS_PARALLELISM_ENV = "TOKENIZERS_PARALLELISM"
LOCAL_WORLD_SIZE_ENV = "LOCAL_WORLD_SIZE"  # processes on this node under torchrun
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_V2_CPU_MAX = "cpu.max"
CGROUP_V1_QUOTA, CGROUP_V1_PERIOD = "cpu/cpu.cfs_quota_us", "cpu/cpu.cfs_period_us"
PROC_SELF_CGROUP = Path("/proc/self/cgroup")
UNLIMITED = "max"

_configured: list = []  # what configure_threads chose in this process (reported by llara env)


@dataclass(frozen=True)
class ThreadSettings:
    """The budget chosen and where it came from (reported by ``llara env``)."""

    threads: int
    source: str  # "OMP_NUM_THREADS", "affinity", "cgroup"
    cpus_available: int
    local_processes: int = 1


def parse_cpu_max(text: str) -> float | None:
    """CPUs allowed by a cgroup v2 ``cpu.max`` line (``"200000 100000"`` -> 2.0); None for ``max`` or junk."""
    parts = text.split()
    if len(parts) != 2 or parts[0] == UNLIMITED:
        return None
    try:
        quota, period = int(parts[0]), int(parts[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return None


def cgroup_cpu_limit(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_SELF_CGROUP) -> float | None:
    """The CPU quota of this process' cgroup (v2 ``cpu.max``, else v1 ``cfs_quota_us``), None if unlimited."""
    own = ""
    for line in (_read(proc_cgroup) or "").splitlines():
        if line.startswith("0::"):
            own = line[3:].lstrip("/")
    for directory in dict.fromkeys([root / own, root]):
        text = _read(directory / CGROUP_V2_CPU_MAX)
        if text is not None:
            return parse_cpu_max(text)
    quota, period = _read(root / CGROUP_V1_QUOTA), _read(root / CGROUP_V1_PERIOD)
    if quota and period:
        return parse_cpu_max(f"{quota} {period}") if not quota.startswith("-") else None
    return None


def affinity_cpus() -> int:
    """CPUs in this process' affinity mask (``os.cpu_count()`` where the platform has no affinity call)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def thread_budget(environ: dict[str, str], affinity: int, cgroup_limit: float | None) -> ThreadSettings:
    """The budget from plain inputs (pure): ``OMP_NUM_THREADS`` wins, else affinity capped by the cgroup quota,
    split between the ``LOCAL_WORLD_SIZE`` processes of the node, at least one thread."""
    available = affinity if cgroup_limit is None else max(1, min(affinity, math.ceil(cgroup_limit)))
    source = "cgroup" if cgroup_limit is not None and math.ceil(cgroup_limit) < affinity else "affinity"
    try:
        processes = max(1, int(environ.get(LOCAL_WORLD_SIZE_ENV, "1")))
    except ValueError:
        processes = 1
    requested = environ.get(OMP_ENV, "").strip()
    if requested.isdigit() and int(requested) > 0:
        return ThreadSettings(int(requested), OMP_ENV, available, processes)
    return ThreadSettings(max(1, available // processes), source, available, processes)


def configure_threads() -> ThreadSettings:
    """Size torch's intra-op pool, faiss' OpenMP pool and the tokenizers' pool to :func:`thread_budget`.

    Libraries not imported yet read the environment when they load (``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``,
    ``RAYON_NUM_THREADS``, set only where unset); already imported ones are set directly. With a budget of one
    thread the tokenizers' pool is turned off (``TOKENIZERS_PARALLELISM=false``).
    """
    settings = thread_budget(dict(os.environ), affinity_cpus(), cgroup_cpu_limit())
    count = str(settings.threads)
    if "torch" not in sys.modules and "faiss" not in sys.modules:  # OpenMP reads it once, at load
        os.environ.setdefault(OMP_ENV, count)
        os.environ.setdefault(MKL_ENV, count)
    os.environ.setdefault(RAYON_ENV, count)
    if settings.threads == 1:
        os.environ.setdefault(TOKENIZERS_PARALLELISM_ENV, "false")
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "set_num_threads"):
        torch.set_num_threads(settings.threads)
    faiss = sys.modules.get("faiss")
    if faiss is not None and hasattr(faiss, "omp_set_num_threads"):
        faiss.omp_set_num_threads(settings.threads)
    logger.debug("threads: %d (%s; %d CPUs available)", settings.threads, settings.source, settings.cpus_available)
    _configured[:] = [settings]
    return settings


def current_thread_settings() -> ThreadSettings:
    """The budget :func:`configure_threads` chose in this process, else the one it would choose now."""
    if _configured:
        return _configured[0]
    return thread_budget(dict(os.environ), affinity_cpus(), cgroup_cpu_limit())
