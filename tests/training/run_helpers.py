"""Helpers shared by the adapt and finetune tests: compare weights, read logs, interrupt a run at a step."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

LAUNCH_TIMEOUT_S = 300


def max_difference(left, right):
    assert left.keys() == right.keys()
    return max((left[key] - right[key]).abs().max().item() for key in left)


def log_records(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


class Interrupt(KeyboardInterrupt):
    pass


def interrupt_at(step):
    def on_log(record):
        if record.get("event") == "step" and record["step"] == step:
            raise Interrupt
    return on_log


def crash_while_publishing(monkeypatch, module, run, config):
    """``run(config)`` failing as it publishes the final model (disk full): the run directory keeps its checkpoints."""
    publish = module.publish_final_dir

    def failing_publish(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(module, "publish_final_dir", failing_publish)
    with pytest.raises(OSError):
        run(config)
    monkeypatch.setattr(module, "publish_final_dir", publish)
    assert not config.out_dir.exists()


def run_llara_under_torchrun(arguments, processes=2):
    """``llara <arguments>`` in ``processes`` gloo processes (torchrun, one thread each); asserts it succeeded."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
                "--no-python", sys.executable, "-c", "from llara_cli.cli.app import main; main()"]
    completed = subprocess.run([*launcher, *arguments], env=environment, capture_output=True, text=True,
                               timeout=LAUNCH_TIMEOUT_S)
    assert completed.returncode == 0, completed.stderr[-3000:]
