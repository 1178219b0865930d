"""The life of a run directory ``<out_dir>.partial``, shared by ``llara adapt`` and ``llara finetune``.

Before training: the destination is checked (:func:`check_destination`), the run directory is locked and set up,
and the checkpoint to resume from is chosen (:func:`run_directory`). At the end the model written into
``<run_dir>/final.tmp`` is published as ``out_dir`` in one rename (:func:`publish_final_dir`). So ``out_dir``
either does not exist or holds a complete model.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from llara_cli.errors import LlaraError, UsageError
from llara_cli.training.run_config import TrainingRunConfig
from llara_cli.training.trainer_utils import (
    CHECKPOINT_MARKER,
    RUN_CONFIG_FILE,
    TRAIN_LOG_FILE,
    JsonlLog,
    check_resumable,
    checkpoint_step,
    last_checkpoint,
    publish_run,
    remove_incomplete_checkpoints,
    write_run_config,
)

logger = logging.getLogger(__name__)

FINAL_TMP = "final.tmp"
TRAINER_STATE = "trainer_state.json"  # the Trainer's step counters, among them global_step and max_steps
# What a checkpoint holds besides the model files: the Trainer's state (DeepSpeed/FSDP states are directories)
# and peft's model-card stub, which says nothing about llara.
CHECKPOINT_ONLY_FILES = ("optimizer*.pt", "optimizer*.bin", "scheduler.pt", "scaler.pt", "rng_state*.pth",
                         TRAINER_STATE, "training_args.bin", CHECKPOINT_MARKER, "latest", "zero_to_fp32.py",
                         "README.md")


INPUT_FIELDS = ("corpus", "train", "queries", "qrels", "negatives_from", "model")  # what a training run reads


def _input_paths(config: TrainingRunConfig) -> list[Path]:
    """The local files and directories a training run reads: its model too, an alias or hub id as the directory
    it resolves to (an ``--out`` onto the cached model is refused like one onto a model directory)."""
    from llara_cli.model.files import is_peft_adapter_dir
    from llara_cli.model.resolve import resolve_model

    values = [getattr(config, name, None) for name in INPUT_FIELDS]
    paths = [Path(str(value)).expanduser() for value in values if value and Path(str(value)).expanduser().exists()]
    model = getattr(config, "model", None)
    if model and not Path(str(model)).expanduser().exists() and not is_peft_adapter_dir(model):
        try:
            paths.append(resolve_model(str(model)))
        except LlaraError:
            pass  # reported where the model is loaded, with its own message
    return paths


def check_destination(config: TrainingRunConfig) -> None:
    """UsageError/LlaraError when ``out_dir`` exists (without ``overwrite``) or cannot be written."""
    from llara_cli.storage.outputs import OutputKind, check_output_directory

    out_dir = config.out_dir
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir} exists and is not a directory")
    if out_dir.exists() and not config.overwrite:
        raise UsageError(f"{out_dir} already exists; pass --overwrite to replace it")
    check_output_directory(out_dir, OutputKind.MODEL, _input_paths(config), config.overwrite)
    for parent in out_dir.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise LlaraError(f"cannot write {out_dir}: {parent} is not a directory")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise LlaraError(f"cannot write {out_dir}: {parent} is not writable")
            break


def finished_training(checkpoint: Path | None) -> bool:
    """Whether ``checkpoint`` is the run's last step (a run interrupted while publishing its model).

    The Trainer resumed there would run one step too many (it checks for the end only after a step).
    """
    from llara_cli.storage.files import read_json

    if checkpoint is None or not (checkpoint / TRAINER_STATE).is_file():
        return False
    state = read_json(checkpoint / TRAINER_STATE)
    return 0 < int(state.get("max_steps", 0)) <= int(state.get("global_step", 0))


def resumed_step(checkpoint: Path | None) -> int | None:
    """The step of the checkpoint a run resumes from (None for a fresh run)."""
    return checkpoint_step(checkpoint) if checkpoint is not None else None


@contextlib.contextmanager
def run_directory(config: TrainingRunConfig, fingerprint: dict[str, Any], *, is_main: bool,
                  barrier: Callable[[], None]) -> Iterator[Path | None]:
    """Lock and set up ``<out_dir>.partial``; yields the checkpoint to resume from (or None).

    Every process runs the read-only checks (so all of them fail alike), then only the main one writes. A run
    that fails before its first checkpoint leaves nothing behind; a successful one removes the directory.
    """
    from llara_cli.storage.locks import output_lock

    run_dir = config.run_dir
    config_file = config.RUN_CONFIG_FILE
    lock = output_lock(run_dir) if is_main else contextlib.nullcontext()
    with lock:
        existing = last_checkpoint(run_dir)
        if config.overwrite:
            existing = None
        elif existing is not None and not config.resume:
            raise UsageError(
                f"{run_dir} holds checkpoints of an unfinished run (last: {existing.name}); "
                "pass --resume to continue it, or --overwrite to start over"
            )
        elif existing is not None:
            saved = config_file if (run_dir / config_file).is_file() else RUN_CONFIG_FILE  # finetune runs before
            check_resumable(run_dir, fingerprint, saved)  # they had their own name wrote adapt_config.json
        elif config.resume:
            logger.warning("nothing to resume in %s: starting from scratch", run_dir)
        log = JsonlLog(run_dir / TRAIN_LOG_FILE)
        barrier()
        if is_main:
            if existing is None:
                clear_run_directory(run_dir)
            remove_incomplete_checkpoints(run_dir)
            write_run_config(run_dir, fingerprint, config.settings(), config_file)
            if existing is not None:
                log.truncate_after(resumed_step(existing) or 0)
        barrier()
        try:
            yield existing
        except BaseException:
            if is_main and existing is None and last_checkpoint(run_dir) is None:
                clear_run_directory(run_dir, keep_lock=False)  # nothing worth resuming: leave nothing behind
            raise
        finally:
            if is_main and run_dir.is_dir() and not (run_dir / config_file).exists():
                shutil.rmtree(run_dir, ignore_errors=True)  # finished (or failed early): nothing left to resume


def clear_run_directory(run_dir: Path, *, keep_lock: bool = True) -> None:
    from llara_cli.storage.locks import LOCK_FILE

    if not run_dir.is_dir():
        return
    for path in run_dir.iterdir():
        if keep_lock and path.name == LOCK_FILE:
            continue
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


def fresh_final_dir(config: TrainingRunConfig, state) -> Path:
    """``<run_dir>/final.tmp``, emptied by the main process (all processes wait for it)."""
    final_dir = config.run_dir / FINAL_TMP
    if state.is_main_process and final_dir.exists():
        shutil.rmtree(final_dir)
    state.wait_for_everyone()
    return final_dir


def publish_final_dir(config: TrainingRunConfig, final_dir: Path, state, *,
                      saved_config_name: str | None = None) -> None:
    """Add the log and settings (as ``saved_config_name``, default the run's own name), then rename ``final_dir``
    to ``out_dir``."""
    if state.is_main_process:
        copied: Mapping[str, str] = {TRAIN_LOG_FILE: TRAIN_LOG_FILE,
                                     config.RUN_CONFIG_FILE: saved_config_name or config.RUN_CONFIG_FILE}
        publish_run(config.run_dir, final_dir, config.out_dir, keep_checkpoints=config.keep_checkpoints,
                    copied_files=copied)


def publish_checkpoint(config: TrainingRunConfig, trainer, checkpoint: Path, state, *,
                       merge_lora: bool, saved_config_name: str | None = None) -> None:
    """Publish the complete checkpoint of the last step as the final model, without training.

    With ``merge_lora`` a LoRA checkpoint's adapters are loaded and merged into plain weights; otherwise the
    checkpoint's model files are the model (an adapter directory, or weights gathered when sharded).
    """
    from llara_cli.model.llara_model import save_model_dir
    from llara_cli.training._trainer import is_peft_model, load_checkpoint_weights

    final_dir = fresh_final_dir(config, state)
    causal_lm = trainer.model.causal_lm
    if state.is_main_process:
        if merge_lora and is_peft_model(causal_lm):
            load_checkpoint_weights(causal_lm, checkpoint)
            save_model_dir(final_dir, causal_lm.merge_and_unload(), trainer.llara_tokenizer, trainer.llara_config)
        else:
            final_dir.mkdir()
            for path in checkpoint.iterdir():
                if path.is_file() and not any(path.match(pattern) for pattern in CHECKPOINT_ONLY_FILES):
                    shutil.copy2(path, final_dir / path.name)
    state.wait_for_everyone()
    publish_final_dir(config, final_dir, state, saved_config_name=saved_config_name)
