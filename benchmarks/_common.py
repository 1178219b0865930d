"""Helpers shared by the benchmark scripts: the shared data, the machine's best dtype, and saving one JSON result.

Importing this module sizes the thread pools (:func:`~llara_cli.runtime.threads.configure_threads`) and notes the
load average; :func:`save_result` adds the machine kind (the ``llara env --json`` content), the load average
before and after and a ``busy`` flag (with a warning) when other work shared the CPUs.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from llara_cli.runtime.threads import configure_threads
from llara_cli.storage.files import write_json

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
# A run is flagged busy when the 1-minute load average, less this run's own threads, exceeds this share of the CPUs.
BUSY_LOAD_PER_CPU = 0.5

THREADS = configure_threads()
LOAD_BEFORE = os.getloadavg()


def best_dtype() -> str:
    """The dtype ``--dtype auto`` picks on this CPU: what "peak" figures are measured in."""
    from llara_cli.runtime.precision import resolve_dtype

    return resolve_dtype("auto")


def load_report(before: tuple[float, float, float] = LOAD_BEFORE) -> dict:
    """Load averages before (at import) and now, and whether other work made the machine busy."""
    after = os.getloadavg()
    limit = BUSY_LOAD_PER_CPU * THREADS.cpus_available
    busy = before[0] > limit or after[0] - THREADS.threads > limit
    return {"load_average_before": [round(load, 2) for load in before],
            "load_average_after": [round(load, 2) for load in after],
            "busy": busy, "busy_threshold_1min": limit}


def cpu_kind() -> dict:
    """The CPU in one small dict: its model name, torch's kernel level (AVX2, AVX512...) and the core count."""
    import platform

    import torch

    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), platform.processor())
    return {"model": model, "capability": torch.backends.cpu.get_cpu_capability(), "cores": os.cpu_count()}


def seeded_encoder(model: str | Path, dtype: str = "auto", prompt_family: str | None = None, seed: int = 0):
    """``LlaraEncoder.load`` with torch seeded first: a raw model in the flagembedding family draws its new marker
    embeddings, so the same seed gives the same encoder in every benchmark."""
    import torch

    from llara_cli.encode.encoder import LlaraEncoder
    from llara_cli.runtime.precision import resolve_dtype

    torch.manual_seed(seed)
    return LlaraEncoder.load(str(model), dtype=resolve_dtype(dtype), prompt_family=prompt_family)


def machine_description() -> dict:
    """The date and the ``llara env --json`` content (versions, CPU kind, native bf16, auto dtype, threads)."""
    from llara_cli.environment import collect_environment

    return {"date": time.strftime("%Y-%m-%d"), **collect_environment()}


def save_result(name: str, result: dict) -> Path:
    """Print one JSON line and save it as ``benchmarks/results/<name>.json`` with the machine and its load."""
    load = load_report()
    if load["busy"]:
        print(f"warning: the machine was busy (load average {load['load_average_before'][0]} before, "
              f"{load['load_average_after'][0]} after on {THREADS.cpus_available} CPUs): times are pessimistic, "
              "read the side-by-side ratios", file=sys.stderr)
    payload = {**result, "load": load, "machine": machine_description()}
    print(json.dumps(payload))
    path = RESULTS_DIR / f"{name}.json"
    write_json(path, payload)
    return path


def save_report(name: str, result: dict, table: str, plot) -> None:
    """:func:`save_result`, then ``<name>.md`` (the table) and ``<name>.png`` beside it; prints the table."""
    save_result(name, result)
    (RESULTS_DIR / f"{name}.md").write_text(table)
    plot(result, RESULTS_DIR / f"{name}.png")
    print(table)
