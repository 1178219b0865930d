"""Helpers shared by the adapt and finetune tests: compare weights, read logs, interrupt a run at a step."""
from __future__ import annotations

import json
from pathlib import Path


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
