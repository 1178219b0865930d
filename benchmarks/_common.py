"""Helpers shared by the benchmark scripts: where the shared data is, and saving one JSON result."""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import torch

from llara_cli.storage.files import write_json

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def machine_description() -> dict:
    return {
        "date": time.strftime("%Y-%m-%d"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }


def save_result(name: str, result: dict) -> Path:
    """Print one JSON line and save it as ``benchmarks/results/<name>.json``."""
    payload = {**result, "machine": machine_description()}
    print(json.dumps(payload))
    path = RESULTS_DIR / f"{name}.json"
    write_json(path, payload)
    return path
