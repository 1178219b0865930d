"""The settings of ``llara finetune`` (:class:`FinetuneConfig`) and what a run returns (:class:`FinetuneResult`).

Imports no torch: the CLI reads its defaults from here.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from llara_cli.core.prompts import PromptFamily, check_max_length, parse_family
from llara_cli.data.finetune import (
    DEFAULT_DEPTH,
    DEFAULT_MIN_RELEVANCE,
    DEFAULT_NUM_NEGATIVES,
    DEFAULT_SKIP,
    DEFAULT_SPLIT,
    MiningSettings,
)
from llara_cli.errors import UsageError
from llara_cli.model.adapters import ALL_LINEAR, LoraSettings
from llara_cli.training.run_config import TrainingRunConfig

if TYPE_CHECKING:  # pragma: no cover - typing only
    from llara_cli.training.query_prompt_choice import QueryPromptChoice

DEFAULT_MODEL = "smollm2-135m"
# finetuning's lengths (RepLLaMA's); a model's inference defaults are model.config's DEFAULT_*_MAX_LENGTH
FINETUNE_QUERY_MAX_LENGTH = 32
FINETUNE_PASSAGE_MAX_LENGTH = 196
DEFAULT_TEMPERATURE = 0.01  # RepLLaMA's, for cosine similarities (normalised embeddings)
GPU_GROUP_SIZE = 16
CPU_GROUP_SIZE = 4
LORA_LEARNING_RATE = 1e-4
FULL_LEARNING_RATE = 1e-5
DEFAULT_LORA_TARGETS = (ALL_LINEAR,)  # every attention and MLP projection of the decoder (not the LM head)
FINETUNE_CONFIG_FILE = "finetune_config.json"
PAIRS_FROM_CORPUS = "corpus"
# Settings that change the trained weights: a resume must match them exactly.
FINGERPRINT_FIELDS = (
    "model", "prompt_family", "split", "skip", "depth", "num_negatives", "min_relevance", "absolute_margin",
    "relative_margin", "pairs_from", "pair_source", "max_pairs", "query_max_length",
    "passage_max_length", "group_size", "in_batch_negatives", "cross_device_negatives", "temperature", "batch_size",
    "grad_accum", "epochs", "max_steps", "learning_rate", "warmup_ratio", "scheduler", "weight_decay",
    "max_grad_norm", "optim", "bf16", "precision", "lora", "lora_r", "lora_alpha", "lora_dropout", "lora_targets", "seed",
    "attn_implementation", "mrl_dims", "mrl_weights",
)


@dataclass(kw_only=True)
class FinetuneConfig(TrainingRunConfig):
    """Everything a finetuning run needs; the CLI fills it from its options.

    Training data: ``train`` is a training jsonl (:mod:`llara_cli.data.finetune`), or a BEIR directory /
    collection name whose hard negatives are mined from the run ``negatives_from``; ``queries``/``qrels``/
    ``corpus`` override (or replace) the parts of a collection. ``batch_size`` (a :class:`TrainingRunConfig`
    setting, like the schedule and checkpoints) counts queries per process. ``group_size`` (1 positive + n-1
    negatives) defaults to 16 on GPU, 4 on CPU; ``learning_rate`` to 1e-4 with LoRA, 1e-5 without.
    ``chunk_size`` turns on the cached contrastive loss (:mod:`llara_cli.training.cached_contrastive`): that many
    texts per forward pass, same gradients; ``None`` lets the memory plan (:mod:`llara_cli.training.memory_plan`)
    choose (off when the whole batch fits), ``0`` keeps it off. Neither it nor ``gradient_checkpointing`` changes
    the trained weights beyond float rounding, so a resume may change them.
    """

    FINGERPRINT_FIELDS: ClassVar[tuple[str, ...]] = FINGERPRINT_FIELDS
    RUN_CONFIG_FILE: ClassVar[str] = FINETUNE_CONFIG_FILE  # a killed run's <out>.partial names it so too

    train: Path | str | None = None
    queries: Path | str | None = None
    qrels: Path | str | None = None
    corpus: Path | str | None = None
    split: str = DEFAULT_SPLIT
    negatives_from: Path | None = None
    pairs_from: str | None = None  # "corpus": unsupervised pairs of the corpus (llara_cli.data.corpus_pairs)
    pair_source: str = "auto"
    max_pairs: int | None = None
    skip: int = DEFAULT_SKIP
    depth: int = DEFAULT_DEPTH
    num_negatives: int = DEFAULT_NUM_NEGATIVES
    min_relevance: int = DEFAULT_MIN_RELEVANCE
    absolute_margin: float | None = None
    relative_margin: float | None = None
    model: str = DEFAULT_MODEL
    prompt_family: PromptFamily | None = None
    query_max_length: int = FINETUNE_QUERY_MAX_LENGTH
    passage_max_length: int = FINETUNE_PASSAGE_MAX_LENGTH
    group_size: int | None = None
    in_batch_negatives: bool = True
    cross_device_negatives: bool = True
    temperature: float = DEFAULT_TEMPERATURE
    epochs: float = 1.0
    max_steps: int | None = None
    lora: bool = True
    lora_r: int = 32
    lora_alpha: int = 64
    lora_dropout: float = 0.1
    lora_targets: tuple[str, ...] = DEFAULT_LORA_TARGETS
    merge: bool = False
    mrl_dims: tuple[int, ...] | None = None  # Matryoshka prefix dims (the full dim is always trained too)
    mrl_weights: tuple[float, ...] | None = None  # one per trained dim, full dim first; default 1 each
    chunk_size: int | None = None  # texts per pass of the cached loss; None: chosen by the memory plan, 0: off
    query_prompt: str = "auto"  # training.query_prompt_choice.QueryPromptSetting: chosen after training

    def __post_init__(self) -> None:
        super().__post_init__()
        self.negatives_from = Path(self.negatives_from) if self.negatives_from else None
        self.lora_targets = tuple(self.lora_targets)
        self.mrl_dims = tuple(int(dim) for dim in self.mrl_dims) if self.mrl_dims else None
        self.mrl_weights = tuple(float(weight) for weight in self.mrl_weights) if self.mrl_weights else None
        self.prompt_family = parse_family(self.prompt_family) if self.prompt_family else None
        if self.group_size is None:
            import torch

            self.group_size = GPU_GROUP_SIZE if torch.cuda.is_available() else CPU_GROUP_SIZE
        if self.learning_rate is None:
            self.learning_rate = LORA_LEARNING_RATE if self.lora else FULL_LEARNING_RATE

    @property
    def lora_settings(self) -> LoraSettings:
        return LoraSettings(self.lora_r, self.lora_alpha, self.lora_dropout, self.lora_targets)

    @property
    def mining(self) -> MiningSettings:
        return MiningSettings(skip=self.skip, depth=self.depth, num_negatives=self.num_negatives, seed=self.seed,
                              min_relevance=self.min_relevance, absolute_margin=self.absolute_margin,
                              relative_margin=self.relative_margin)

    def validate(self) -> None:
        self.validate_run_settings()
        if self.pairs_from not in (None, PAIRS_FROM_CORPUS):
            raise UsageError(f"--pairs-from {self.pairs_from!r}: only {PAIRS_FROM_CORPUS!r} is known")
        if self.max_pairs is not None and self.max_pairs < 1:
            raise UsageError(f"--max-pairs must be at least 1, got {self.max_pairs}")
        if self.chunk_size is not None and self.chunk_size < 0:
            raise UsageError(f"--chunk-size must be 0 (off) or positive, got {self.chunk_size}")
        for name in ("group_size", "lora_r"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        for name in ("query_max_length", "passage_max_length"):
            check_max_length(getattr(self, name), f"--{name.replace('_', '-')}")
        if self.max_steps is not None and self.max_steps < 1:
            raise UsageError(f"--max-steps must be at least 1, got {self.max_steps}")
        if self.epochs <= 0:
            raise UsageError(f"--epochs must be positive, got {self.epochs}")
        if self.temperature <= 0:
            raise UsageError(f"--temperature must be positive, got {self.temperature}")
        if not 0 <= self.lora_dropout < 1:
            raise UsageError(f"--lora-dropout must be in [0, 1), got {self.lora_dropout}")
        if self.merge and not self.lora:
            raise UsageError("--merge applies to LoRA finetuning; full finetuning already writes whole weights")
        if not self.lora_targets or not all(target.strip() for target in self.lora_targets):
            raise UsageError("--lora-targets needs at least one module name (or all-linear)")
        self.mining.validate()
        if self.mrl_weights is not None and self.mrl_dims is None:
            raise UsageError("--mrl-weights needs --mrl-dims")
        if self.mrl_dims is not None:
            if any(dim < 1 for dim in self.mrl_dims) or len(set(self.mrl_dims)) != len(self.mrl_dims):
                raise UsageError(f"--mrl-dims must be distinct positive dims, got {','.join(map(str, self.mrl_dims))}")
            if self.mrl_weights is not None and any(not weight > 0 for weight in self.mrl_weights):
                raise UsageError("--mrl-weights must be positive")
        from llara_cli.training.query_prompt_choice import parse_query_prompt_setting

        parse_query_prompt_setting(self.query_prompt)


def matryoshka_dims(dims: tuple[int, ...] | None, weights: tuple[float, ...] | None,
                    full_dim: int) -> tuple[tuple[int, ...] | None, tuple[float, ...] | None]:
    """The dims the Matryoshka loss trains, descending with the model's ``full_dim`` first (added when absent),
    and one weight each (default 1). ``(None, None)`` without ``--mrl-dims``; a dim above ``full_dim`` or a
    weight count that does not match is a UsageError."""
    if not dims:
        return None, None
    too_large = [dim for dim in dims if dim > full_dim]
    if too_large:
        raise UsageError(f"--mrl-dims {','.join(map(str, too_large))} larger than the model's {full_dim}-dim embeddings")
    trained = tuple(sorted({*dims, full_dim}, reverse=True))
    if weights is None:
        return trained, (1.0,) * len(trained)
    if len(weights) == len(dims) and full_dim in dims:
        by_dim = dict(zip(dims, weights))
        return trained, tuple(by_dim[dim] for dim in trained)
    if len(weights) == len(trained):
        return trained, tuple(weights)
    raise UsageError(f"--mrl-weights: {len(weights)} weights for the {len(trained)} trained dims "
                     f"({','.join(map(str, trained))}, the full dim first)")



@dataclass(frozen=True)
class FinetuneResult:
    out_dir: Path
    steps: int
    resumed_from_step: int | None
    train_loss: float | None
    log_path: Path
    examples: int
    dropped_without_negatives: int
    adapter: bool  # the output is an adapter directory (LoRA without --merge)
    query_prompt: QueryPromptChoice | None = None  # None on the processes other than the main one
