"""Every option two or more commands share, defined once: its name, help and (where shared) default.

Commands annotate their parameters with these ``Annotated`` aliases; defaults that belong to a library config
come from it (``run_default("batch_size")`` is :class:`~llara_cli.training.run_config.TrainingRunConfig`'s), so
the CLI and the Python API cannot drift apart. :func:`with_options` adds a group of them
(:data:`RUN_OPTIONS`, :data:`LORA_OPTIONS`, :data:`MINING_OPTIONS`) to each command that takes it; ``finite``
and ``at_most`` are option callbacks. Nothing heavy is imported here: the CLI root must start fast.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import math
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from llara_cli.core.prompts import MIN_MAX_LENGTH, PromptFamily
from llara_cli.data.finetune import (
    DEFAULT_DEPTH,
    DEFAULT_MIN_RELEVANCE,
    DEFAULT_NUM_NEGATIVES,
    DEFAULT_SKIP,
    DEFAULT_SPLIT,
)
from llara_cli.model.resolve import DEFAULT_MODEL_ALIAS
from llara_cli.runtime.dtypes import DEFAULT_DTYPE, Dtype
from llara_cli.training.query_prompt_choice import MIN_GAIN as QUERY_PROMPT_MIN_GAIN
from llara_cli.training.run_config import TrainingRunConfig

DEFAULT_MODEL = DEFAULT_MODEL_ALIAS
TRAINING = "Training"
DATA = "Data"
RUN = "Checkpoints and logs"


def config_default(config_class: type, name: str) -> Any:
    """The default of field ``name`` of a config dataclass: the one source of the CLI's defaults."""
    return next(spec.default for spec in dataclasses.fields(config_class) if spec.name == name)


def explicit_options(context: typer.Context | None, names: dict[str, str]) -> set[str]:
    """The config fields (values of ``names``, keyed by the command's parameter names) the user set on the command
    line or through the environment: a model's recipe fills the others (:mod:`llara_cli.training.recipes`)."""
    if context is None:  # called as a function: every value is the caller's
        return set(names.values())
    given = ("COMMANDLINE", "ENVIRONMENT")
    sources = {parameter: context.get_parameter_source(parameter) for parameter in names}
    return {names[parameter] for parameter, source in sources.items() if source is not None and source.name in given}


def run_default(name: str) -> Any:
    """A :class:`TrainingRunConfig` default (``llara adapt`` and ``llara finetune`` share them)."""
    return config_default(TrainingRunConfig, name)


# ------------------------------------------------------------------------------------------------ model, I/O

ModelOpt = Annotated[
    str,
    typer.Option(
        "--model", "-m",
        help="Model: a local Hugging Face / llara model directory, or an alias (smollm2-135m, llama-2-7b).",
    ),
]
OptionalModelOpt = Annotated[
    str | None,
    typer.Option("--model", "-m", help="Model directory or alias; default: the one recorded with the index."),
]
QueryPromptOpt = Annotated[
    str,
    typer.Option("--query-prompt", help="The prompt the trained model's queries get at search: auto (after training, "
                 "the one whose corpus pseudo-queries find their own document better: ebae where it beats ebar by "
                 f"{QUERY_PROMPT_MIN_GAIN} MRR@10), ebar (the paper's query prompt) or ebae (the passage prompt: a "
                 "symmetric model). Training always trains both prompts."),
]
QueryPromptOverrideOpt = Annotated[
    str | None,
    typer.Option("--query-prompt", help="The prompt queries are encoded with: ebar (the paper's query prompt) or ebae "
                 "(the passage prompt); default: the model's own (its llara_config.json query_prompt, chosen by "
                 "llara adapt/finetune; ebar when absent)."),
]
PromptFamilyOpt = Annotated[
    PromptFamily | None,
    typer.Option("--prompt-family", help="paper or flagembedding; default: the model's saved family (a tokenizer "
                 "with the <s1>..<s16> markers means flagembedding), else paper."),
]
DtypeOpt = Annotated[
    Dtype,
    typer.Option("--dtype", help="Model dtype: auto (bf16 where the hardware runs it natively, else fp32; "
                 "`llara env` shows the choice), fp32, bf16 or fp16."),
]
TrustRemoteCodeOpt = Annotated[
    bool, typer.Option("--trust-remote-code", help="Allow custom model code from the model directory (off by default).")
]
BatchSizeOpt = Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Texts per forward pass.")]
MaxLengthOpt = Annotated[int, typer.Option("--max-length", min=MIN_MAX_LENGTH, help="Maximum tokens per text, prompt included.")]
ModelMaxLengthOpt = Annotated[
    int | None,
    typer.Option("--max-length", min=MIN_MAX_LENGTH, help="Tokens per text, prompt included; default: the length the model was "
                 "trained with (its llara_config.json; 512 passages / 64 queries for a model llara has not trained)."),
]
DimOpt = Annotated[int | None, typer.Option(
    "--dim", min=1, help="Keep only the first DIM dimensions of each embedding (L2-normalised again): Matryoshka "
    "truncation, lossless-ish for a model finetuned with --mrl-dims; recorded in meta.json.")]
OutDirOpt = Annotated[Path, typer.Option("--out", "-o", help="Output directory.")]
OutFileOpt = Annotated[Path, typer.Option("--out", "-o", help="Output file.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output that llara wrote for this command (never an input, a foreign directory or a special file).")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed (data order, sampling).")]

# ---------------------------------------------------------------------------------------- collections, qrels

QueriesOpt = Annotated[
    Path | None, typer.Option("--queries", "-q", help="Queries: jsonl, topics tsv, or a BEIR directory.")
]
QrelsOpt = Annotated[
    str,
    typer.Option(
        "--qrels",
        help="Qrels: a TREC or BEIR file, a BEIR directory, or a name (msmarco, msmarco-doc-dev, beir/<name>, "
        "scifact, cacm, cranfield) looked up under $LLARA_DATA, then ~/.cache/llara/data.",
    ),
]
QrelsSplitOpt = Annotated[
    str, typer.Option("--split", help="Qrels split of a BEIR-layout collection (qrels/<split>.tsv).")
]
QueriesPartOpt = Annotated[
    str | None,
    typer.Option("--queries", "-q", help="Queries file (overrides the collection's).", rich_help_panel=DATA),
]
QrelsPartOpt = Annotated[str | None, typer.Option("--qrels", help="Qrels file (overrides the collection's).",
                                                     rich_help_panel=DATA)]
CorpusPartOpt = Annotated[str | None, typer.Option("--corpus", help="Corpus file (overrides the collection's).",
                                                      rich_help_panel=DATA)]
TrainSplitOpt = Annotated[str, typer.Option("--split", help="Qrels split of a BEIR-layout collection.",
                                            rich_help_panel=DATA)]
SkipOpt = Annotated[int, typer.Option("--skip", min=0, help="Never take negatives from the run's top SKIP ranks.",
                                      rich_help_panel=DATA)]
DepthOpt = Annotated[int, typer.Option("--depth", min=1, help="Sample negatives from ranks up to DEPTH.",
                                       rich_help_panel=DATA)]
NumNegativesOpt = Annotated[int, typer.Option("--num-negatives", min=1, help="Hard negatives kept per query.",
                                              rich_help_panel=DATA)]
MinRelevanceOpt = Annotated[int, typer.Option("--min-relevance", help="Judgements >= this are positives.",
                                              rich_help_panel=DATA)]
AbsoluteMarginOpt = Annotated[float | None, typer.Option(
    "--absolute-margin", help="Drop candidates the run scores above (positive's score - this): likely unjudged "
    "positives.", rich_help_panel=DATA)]
RelativeMarginOpt = Annotated[float | None, typer.Option(
    "--relative-margin", help="Drop candidates the run scores above positive's score x (1 - this), e.g. 0.05 "
    "(positive scores: cosine or BM25).", rich_help_panel=DATA)]

# ----------------------------------------------------------------------------- training (adapt and finetune)

TrainBatchSizeOpt = Annotated[int, typer.Option(
    "--batch-size", "-b", min=1, help="Examples (finetune: queries) per process per micro-batch; global batch = "
    "batch size x --grad-accum x processes.", rich_help_panel=TRAINING)]
GradAccumOpt = Annotated[int, typer.Option("--grad-accum", min=1, help="Micro-batches per optimizer step.",
                                           rich_help_panel=TRAINING)]
WarmupRatioOpt = Annotated[float, typer.Option("--warmup-ratio", help="Share of the steps spent warming up.",
                                               rich_help_panel=TRAINING)]
SchedulerOpt = Annotated[str, typer.Option("--scheduler", help="linear, cosine or constant_with_warmup.",
                                           rich_help_panel=TRAINING)]
WeightDecayOpt = Annotated[float, typer.Option("--weight-decay", help="AdamW weight decay.", rich_help_panel=TRAINING)]
MaxGradNormOpt = Annotated[float, typer.Option("--max-grad-norm", help="Gradient clipping (0: off).",
                                               rich_help_panel=TRAINING)]
OptimOpt = Annotated[str, typer.Option("--optim", help="HF Trainer optimizer name (adamw_torch, sgd, adafactor...).",
                                       rich_help_panel=TRAINING)]
PrecisionOpt = Annotated[Dtype, typer.Option(
    "--precision", help="Mixed precision: auto (bf16 on GPUs and CPUs with native bf16, else fp32), fp32, bf16 "
    "or fp16.", rich_help_panel=TRAINING)]
Bf16Opt = Annotated[bool, typer.Option("--bf16", help="Same as --precision bf16 (older spelling).",
                                       rich_help_panel=TRAINING)]
GradientCheckpointingOpt = Annotated[bool, typer.Option(
    "--gradient-checkpointing", help="Recompute activations in the backward pass (less memory, slower).",
    rich_help_panel=TRAINING)]
MemoryCheckOpt = Annotated[bool, typer.Option(
    "--memory-check/--no-memory-check", help="Refuse a CPU run whose estimated peak memory exceeds the machine's "
    "(--no-memory-check: warn and start anyway).", rich_help_panel=TRAINING)]
LoraOpt = Annotated[bool, typer.Option(
    "--lora/--full", help="Train LoRA adapters, or every weight (--full).", rich_help_panel=TRAINING)]
LoraROpt = Annotated[int, typer.Option("--lora-r", min=1, help="LoRA rank.", rich_help_panel=TRAINING)]
LoraAlphaOpt = Annotated[int, typer.Option("--lora-alpha", min=1, help="LoRA alpha.", rich_help_panel=TRAINING)]
LoraDropoutOpt = Annotated[float, typer.Option("--lora-dropout", help="LoRA dropout.", rich_help_panel=TRAINING)]
SaveStepsOpt = Annotated[int, typer.Option("--save-steps", min=1, help="Checkpoint every N steps.",
                                           rich_help_panel=RUN)]
SaveTotalLimitOpt = Annotated[int, typer.Option("--save-total-limit", min=0, help="Checkpoints kept (0: all).",
                                                rich_help_panel=RUN)]
LoggingStepsOpt = Annotated[int, typer.Option("--logging-steps", min=1, help="Log every N steps.",
                                              rich_help_panel=RUN)]
ResumeOpt = Annotated[bool, typer.Option(
    "--resume", help="Continue from the last checkpoint in <out>.partial (same settings required).",
    rich_help_panel=RUN)]
KeepCheckpointsOpt = Annotated[bool, typer.Option(
    "--keep-checkpoints", help="Move the checkpoints into <out>/checkpoints instead of deleting them.",
    rich_help_panel=RUN)]

# ---------------------------------------------------------------------------------------------- option groups

OptionGroup = dict[str, tuple[Any, Any]]  # parameter name -> (its Annotated option, its default)


def options_of(config_class: type, options: dict[str, Any]) -> OptionGroup:
    """The ``options`` (field name -> Annotated option) of a config dataclass, with the config's defaults."""
    return {name: (option, config_default(config_class, name)) for name, option in options.items()}


RUN_OPTIONS: OptionGroup = options_of(TrainingRunConfig, {  # adapt and finetune: the Trainer settings
    "batch_size": TrainBatchSizeOpt, "grad_accum": GradAccumOpt, "warmup_ratio": WarmupRatioOpt,
    "scheduler": SchedulerOpt, "weight_decay": WeightDecayOpt, "max_grad_norm": MaxGradNormOpt, "optim": OptimOpt,
    "precision": PrecisionOpt, "bf16": Bf16Opt, "gradient_checkpointing": GradientCheckpointingOpt, "seed": SeedOpt,
    "save_steps": SaveStepsOpt, "save_total_limit": SaveTotalLimitOpt, "logging_steps": LoggingStepsOpt,
    "resume": ResumeOpt, "keep_checkpoints": KeepCheckpointsOpt, "overwrite": OverwriteOpt,
    "trust_remote_code": TrustRemoteCodeOpt, "memory_check": MemoryCheckOpt,
})
RUN_OPTIONS["precision"] = (PrecisionOpt, DEFAULT_DTYPE)  # the library's default is fp32; the CLI's is auto
LORA_OPTIONS = {"lora": LoraOpt, "lora_r": LoraROpt, "lora_alpha": LoraAlphaOpt, "lora_dropout": LoraDropoutOpt}
"""adapt and finetune: the LoRA switch and shape (their defaults differ: ``options_of(AdaptConfig, LORA_OPTIONS)``)."""
MINING_OPTIONS: OptionGroup = {  # finetune and mine: the collection's parts and how negatives are drawn
    "queries": (QueriesPartOpt, None), "qrels": (QrelsPartOpt, None), "corpus": (CorpusPartOpt, None),
    "split": (TrainSplitOpt, DEFAULT_SPLIT), "skip": (SkipOpt, DEFAULT_SKIP), "depth": (DepthOpt, DEFAULT_DEPTH),
    "num_negatives": (NumNegativesOpt, DEFAULT_NUM_NEGATIVES), "min_relevance": (MinRelevanceOpt, DEFAULT_MIN_RELEVANCE),
    "absolute_margin": (AbsoluteMarginOpt, None), "relative_margin": (RelativeMarginOpt, None),
}


def with_options(group: OptionGroup, keyword: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Decorator: give a command the options of ``group`` (after its own); the command receives their values
    as one dict, its parameter ``keyword`` (which Typer does not see)."""
    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        own = inspect.signature(command, eval_str=True)
        added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=option, default=default)
                 for name, (option, default) in group.items()]

        @functools.wraps(command)
        def with_group(**values: Any) -> None:
            grouped = {name: values.pop(name) for name in group}
            command(**values, **{keyword: grouped})

        parameters = [parameter for name, parameter in own.parameters.items() if name != keyword]
        with_group.__signature__ = own.replace(parameters=[*parameters, *added])  # what Typer reads
        return with_group

    return decorate


def finite(value: float) -> float:
    """Option callback: refuse ``nan`` and ``inf``, which click's float ranges let through."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value


def at_most(limit: int) -> Callable[[int], int]:
    """Option callback: refuse values above ``limit`` (without widening the help table as ``max=`` does)."""
    def check(value: int) -> int:
        if value is not None and value > limit:
            raise typer.BadParameter(f"{value} is above the largest allowed value, {limit}")
        return value
    return check
