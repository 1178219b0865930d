"""Small pieces of the training runs that need no torch: checkpoint bookkeeping, resume checks, the jsonl log.

A checkpoint directory ``checkpoint-<step>`` counts as complete only once its ``llara_checkpoint.json`` marker
exists; the marker is written atomically after every file of the checkpoint (all ranks) is on disk, so a crash
while saving leaves a directory that is ignored (and removed) on resume.
"""
from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llara_cli.errors import LlaraError, UsageError
from llara_cli.storage.files import atomic_write, iter_lines, read_json, write_json

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
CHECKPOINT_PATTERN = re.compile(rf"^{CHECKPOINT_PREFIX}(\d+)$")
CHECKPOINT_MARKER = "llara_checkpoint.json"
RUN_CONFIG_FILE = "adapt_config.json"  # adapt's; each run config names its own (TrainingRunConfig.RUN_CONFIG_FILE)
TRAIN_LOG_FILE = "train_log.jsonl"
DIFFERENCES_SHOWN = 3


# ------------------------------------------------------------------------------------------------- checkpoints


def checkpoint_step(path: Path) -> int | None:
    match = CHECKPOINT_PATTERN.match(path.name)
    return int(match.group(1)) if match and path.is_dir() else None


def list_checkpoints(run_dir: str | Path, *, complete: bool = True) -> list[Path]:
    """``checkpoint-<step>`` directories sorted by step; only those with a marker when ``complete``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [(step, path) for path in run_dir.iterdir() if (step := checkpoint_step(path)) is not None]
    found.sort()
    return [path for _, path in found if not complete or (path / CHECKPOINT_MARKER).is_file()]


def last_checkpoint(run_dir: str | Path) -> Path | None:
    checkpoints = list_checkpoints(run_dir)
    return checkpoints[-1] if checkpoints else None


def mark_checkpoint_complete(checkpoint_dir: str | Path, step: int, fingerprint: Mapping[str, Any]) -> None:
    write_json(Path(checkpoint_dir) / CHECKPOINT_MARKER, {"step": step, "fingerprint": dict(fingerprint)})


def remove_incomplete_checkpoints(run_dir: str | Path) -> list[Path]:
    """Delete checkpoint directories without a marker (interrupted saves); returns what was removed."""
    complete = set(list_checkpoints(run_dir))
    removed = [path for path in list_checkpoints(run_dir, complete=False) if path not in complete]
    for path in removed:
        logger.info("removing the incomplete checkpoint %s", path)
        shutil.rmtree(path, ignore_errors=True)
    return removed


def rotate_checkpoints(run_dir: str | Path, keep: int | None) -> None:
    """Keep the ``keep`` most recent complete checkpoints (all when ``keep`` is None or < 1)."""
    if not keep or keep < 1:
        return
    for path in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(path, ignore_errors=True)


# ------------------------------------------------------------------------------------------------- resume checks


def describe_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``"key: saved -> current"`` for every setting that differs (missing keys count as differences)."""
    keys = sorted(set(saved) | set(current))
    return [f"{key}: {saved.get(key)!r} -> {current.get(key)!r}" for key in keys if saved.get(key) != current.get(key)]


def check_resumable(run_dir: str | Path, fingerprint: Mapping[str, Any], config_file: str = RUN_CONFIG_FILE) -> None:
    """Refuse (UsageError) to resume a run whose saved hyperparameters (``config_file``) differ from the current ones."""
    path = Path(run_dir) / config_file
    if not path.is_file():
        raise UsageError(f"cannot resume from {run_dir}: {config_file} is missing (not a run of this command?)")
    saved = read_json(path).get("fingerprint", {})
    differences = describe_differences(saved, json.loads(json.dumps(dict(fingerprint))))
    if differences:
        shown = "; ".join(differences[:DIFFERENCES_SHOWN])
        more = f" (and {len(differences) - DIFFERENCES_SHOWN} more)" if len(differences) > DIFFERENCES_SHOWN else ""
        raise UsageError(
            f"cannot resume {run_dir}: the settings differ from the checkpoint's ({shown}{more}); "
            "use the original settings, or --overwrite to start over"
        )


def write_run_config(run_dir: str | Path, fingerprint: Mapping[str, Any], settings: Mapping[str, Any],
                     config_file: str = RUN_CONFIG_FILE) -> None:
    write_json(Path(run_dir) / config_file, {"fingerprint": dict(fingerprint), "settings": dict(settings)})


# ------------------------------------------------------------------------------------------------- jsonl log


class JsonlLog:
    """Appends one JSON object a line, flushed per record so a crash loses at most the line being written."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def append(self, record: Mapping[str, Any]) -> None:
        try:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(dict(record), sort_keys=True) + "\n")
        except OSError as error:
            raise LlaraError(f"cannot write {self.path}: {error.strerror or error}") from None

    def records(self) -> list[dict[str, Any]]:
        """The logged records; a line cut short by a crash is skipped."""
        records = []
        for _, line in iter_lines(self.path) if self.path.is_file() else ():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records

    def truncate_after(self, step: int) -> None:
        """Drop the records of steps after ``step`` (logged by a run that was then interrupted)."""
        if not self.path.is_file():
            return
        kept = [record for record in self.records() if int(record.get("step", 0)) <= step]
        with atomic_write(self.path) as handle:
            for record in kept:
                handle.write(json.dumps(record, sort_keys=True) + "\n")


def publish_run(run_dir: Path, final_dir: Path, out_dir: Path, *, copied_files: Mapping[str, str],
                keep_checkpoints: bool) -> None:
    """Move a finished model from ``final_dir`` to ``out_dir`` in one rename, then clear the run directory.

    ``copied_files`` maps files of the run directory (log, settings) to their names in the model directory.
    With ``--overwrite`` the previous model is removed only after the new one is in place. Main process only.
    """
    import os

    from llara_cli.storage.locks import LOCK_FILE

    try:
        for source_name, target_name in copied_files.items():
            if (run_dir / source_name).is_file():
                shutil.copy2(run_dir / source_name, final_dir / target_name)
        if keep_checkpoints:
            (final_dir / "checkpoints").mkdir()
            for checkpoint in list_checkpoints(run_dir):
                os.rename(checkpoint, final_dir / "checkpoints" / checkpoint.name)
        previous = out_dir.with_name(f".{out_dir.name}.replaced")
        if out_dir.exists():  # --overwrite: the old model goes only once the new one is complete
            shutil.rmtree(previous, ignore_errors=True)
            os.rename(out_dir, previous)
        os.rename(final_dir, out_dir)
        shutil.rmtree(previous, ignore_errors=True)
    except OSError as error:
        raise LlaraError(f"cannot write {out_dir}: {error.strerror or error}") from None
    for path in run_dir.iterdir():  # the lock file goes with the lock
        if path.name != LOCK_FILE:
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
