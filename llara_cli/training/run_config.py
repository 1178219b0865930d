"""What ``llara adapt`` and ``llara finetune`` share: the Trainer settings and their mapping to TrainingArguments.

:class:`TrainingRunConfig` holds the optimisation, checkpointing and process settings both runs take; their
configs (:class:`~llara_cli.training.adapt.AdaptConfig`, :class:`~llara_cli.training.finetune_config.FinetuneConfig`)
add their own data and model fields (and their own defaults for ``learning_rate``). All fields are keyword-only.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar

from llara_cli.errors import UsageError
from llara_cli.runtime.precision import AUTO, BF16, FP16, FP32, check_precision

PARTIAL_SUFFIX = ".partial"
SCHEDULERS = ("linear", "cosine", "constant_with_warmup")


@dataclass(kw_only=True)
class TrainingRunConfig:
    """The settings of a Trainer run writing ``out_dir`` (through ``<out_dir>.partial``).

    ``batch_size`` is per process; the global batch is ``batch_size x grad_accum x processes``. Subclasses
    resolve ``learning_rate`` (``None``: their default) in ``__post_init__``. ``precision`` is the mixed
    precision of the run (``fp32``: none); ``auto`` is resolved for the training device on construction
    (:func:`~llara_cli.runtime.precision.resolve_dtype`), so the saved run config records the one used.
    ``bf16=True`` is the older spelling of ``precision="bf16"``; after construction it mirrors ``precision``.
    """

    out_dir: Path
    batch_size: int = 8
    grad_accum: int = 1
    learning_rate: float | None = None
    warmup_ratio: float = 0.1
    scheduler: str = "linear"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    optim: str = "adamw_torch"
    precision: str = FP32
    bf16: bool = False
    gradient_checkpointing: bool = False
    seed: int = 42
    save_steps: int = 500
    save_total_limit: int | None = 2
    logging_steps: int = 1
    resume: bool = False
    overwrite: bool = False
    keep_checkpoints: bool = False
    trust_remote_code: bool = False
    attn_implementation: str = "sdpa"
    memory_check: bool = True  # refuse a run the memory plan says cannot fit (False: warn only)

    FINGERPRINT_FIELDS: ClassVar[tuple[str, ...]] = ()  # the settings that change the weights: a resume must match
    RUN_CONFIG_FILE: ClassVar[str] = "run_config.json"  # the settings file in the run and model directories

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        self.precision = resolve_training_precision(self.precision, self.bf16)
        self.bf16 = self.precision == BF16
        if self.save_total_limit == 0:  # the CLI's "0: keep every checkpoint"
            self.save_total_limit = None

    @property
    def run_dir(self) -> Path:
        """Where checkpoints and the log live until the model is complete: ``<out_dir>.partial``."""
        return self.out_dir.with_name(self.out_dir.name + PARTIAL_SUFFIX)

    def validate_run_settings(self) -> None:
        """UsageError for a shared setting out of range (subclasses check their own fields)."""
        at_least_one = {"batch_size": self.batch_size, "grad_accum": self.grad_accum,
                        "save_steps": self.save_steps, "logging_steps": self.logging_steps}
        for name, value in at_least_one.items():
            if value < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
        if self.learning_rate is None or self.learning_rate <= 0:
            raise UsageError(f"--lr must be positive, got {self.learning_rate}")
        if not 0 <= self.warmup_ratio < 1:
            raise UsageError(f"--warmup-ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.scheduler not in SCHEDULERS:
            raise UsageError(f"unknown --scheduler {self.scheduler!r}: choose one of {', '.join(SCHEDULERS)}")
        if self.weight_decay < 0 or self.max_grad_norm < 0:
            raise UsageError("--weight-decay and --max-grad-norm cannot be negative")
        if self.resume and self.overwrite:
            raise UsageError("--resume and --overwrite contradict each other: choose one")

    def settings(self) -> dict[str, Any]:
        """Every field, JSON-ready (for the run's saved config)."""
        return {key: _plain(value) for key, value in dataclasses.asdict(self).items()}

    def fingerprint(self, **extra: Any) -> dict[str, Any]:
        """The ``FINGERPRINT_FIELDS`` a resume must match, JSON-ready, plus ``extra`` (world size, resolved
        prompt family, data identity)."""
        return {**{name: _plain(getattr(self, name)) for name in self.FINGERPRINT_FIELDS}, **extra}


def _plain(value: Any) -> Any:
    """A setting as JSON holds it: paths and enums as strings, tuples as lists."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    return list(value) if isinstance(value, tuple) else value


def resolve_training_precision(precision: str, bf16_alias: bool = False) -> str:
    """The concrete mixed precision of a run: ``precision`` (``auto`` resolved for the training device), or
    bf16 when the ``--bf16`` alias is set; the alias with another explicit precision is a UsageError."""
    from llara_cli.runtime.precision import default_device_type, resolve_dtype

    if check_precision(precision) in (FP32, FP16) and not bf16_alias:
        return precision
    if bf16_alias:
        if precision not in (AUTO, BF16, FP32):
            raise UsageError(f"--bf16 contradicts --precision {precision}: pass one of them")
        precision = BF16
    return resolve_dtype(precision, default_device_type())


def training_arguments(config: TrainingRunConfig, **specific: Any):
    """TrainingArguments for ``config`` plus the run's ``specific`` ones (steps, warmup, DeepSpeed...).

    On CPU under torchrun / accelerate launch the process group uses gloo. Only the main process writes the
    log (:class:`~llara_cli.training._trainer.RunCallback`), so the Trainer's own printing is off; checkpoint
    rotation happens after a checkpoint is marked complete, so the Trainer's is off too. A setting the Trainer
    refuses (an unknown optimizer, DeepSpeed not installed) becomes one UsageError line.
    """
    import torch
    from transformers import TrainingArguments

    use_cpu = not torch.cuda.is_available()
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    settings = dict(
        output_dir=str(config.run_dir),
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.scheduler,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        optim=config.optim,
        bf16=config.precision == BF16,
        fp16=config.precision == FP16,
        use_cpu=use_cpu,
        ddp_backend="gloo" if use_cpu and distributed else None,
        ddp_find_unused_parameters=False,
        logging_strategy="steps",
        logging_steps=config.logging_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=None,
        report_to=[],
        disable_tqdm=True,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        accelerator_config={"dispatch_batches": False, "split_batches": False},
        seed=config.seed,
        skip_memory_metrics=True,
    )
    try:
        return TrainingArguments(**{**settings, **specific})
    except (ImportError, ValueError) as error:
        message = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise UsageError(f"cannot set up training: {message}") from None
