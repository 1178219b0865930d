"""Helpers shared by the adapt and finetune tests: compare weights, read logs, interrupt a run at a step."""
from __future__ import annotations

import json
from pathlib import Path

import pytest


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
