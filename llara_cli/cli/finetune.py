"""`llara finetune`: RepLLaMA-style contrastive finetuning with LoRA and hard negatives."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from llara_cli.cli.options import (
    DATA,
    DEFAULT_MODEL,
    LORA_OPTIONS,
    MINING_OPTIONS,
    RUN_OPTIONS,
    TRAINING,
    ModelOpt,
    OutDirOpt,
    PromptFamilyOpt,
    QueryPromptOpt,
    config_default,
    explicit_options,
    options_of,
    with_options,
)
from llara_cli.cli.progress import is_main_process, printing_first, step_progress
from llara_cli.core.prompts import MIN_MAX_LENGTH
from llara_cli.errors import UsageError
from llara_cli.training.finetune_config import FinetuneConfig
from llara_cli.training.query_prompt_choice import QueryPromptSetting

TrainOpt = Annotated[
    str | None,
    typer.Option("--train", "-t", help="A training jsonl ({query, pos, neg}), or a BEIR directory / collection "
                 "name (positives from its qrels, negatives mined from --negatives-from).", rich_help_panel=DATA),
]
LORA_TARGET_SEPARATOR = ","
RECIPE_PARAMETERS = {name: name for name in ("learning_rate", "max_steps", "batch_size", "group_size",
                                             "query_max_length", "passage_max_length", "temperature")}


def _default(name: str):
    return config_default(FinetuneConfig, name)


def _parse_numbers(option: str, text: str | None, kind: type) -> tuple | None:
    """``"576,288,144"`` -> ``(576, 288, 144)``; None stays None; anything else is a one-line UsageError."""
    if text is None:
        return None
    try:
        return tuple(kind(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UsageError(f"{option} must be comma-separated {kind.__name__}s, got {text!r}") from None


def _split_targets(text: str) -> tuple[str, ...]:
    targets = tuple(part.strip() for part in text.split(LORA_TARGET_SEPARATOR) if part.strip())
    if not targets:
        raise UsageError("--lora-targets needs at least one module name, e.g. q_proj,v_proj or all-linear")
    return targets


@with_options(RUN_OPTIONS, "run_settings")
@with_options(options_of(FinetuneConfig, LORA_OPTIONS), "lora_settings")
@with_options(MINING_OPTIONS, "data_settings")
def finetune(
    ctx: typer.Context,
    out: OutDirOpt,
    train: TrainOpt = None,
    model: ModelOpt = DEFAULT_MODEL,
    negatives_from: Annotated[Path | None, typer.Option(
        "--negatives-from", help="TREC run to mine hard negatives from (a collection --train only).",
        rich_help_panel=DATA)] = None,
    prompt_family: PromptFamilyOpt = None,
    query_max_length: Annotated[int, typer.Option(
        "--query-max-length", min=MIN_MAX_LENGTH, help="Tokens per query, prompt included (saved with the model: the default "
        "of encode and search). Default: the model's (its llara_config.json, else its recipe: 64).",
        show_default=False)] = _default("query_max_length"),
    passage_max_length: Annotated[int, typer.Option(
        "--passage-max-length", min=MIN_MAX_LENGTH, help="Tokens per passage, prompt included (saved with the model: the "
        "default of encode). Default: the model's (its llara_config.json, else its recipe: smollm2-135m 128, "
        "7B-class 196).", show_default=False)] = _default("passage_max_length"),
    group_size: Annotated[int | None, typer.Option(
        "--group-size", min=1, help="Passages per query: 1 positive + n-1 hard negatives. Default: the model's "
        "recipe (smollm2-135m: 2), else 16 on GPU, 4 on CPU.", rich_help_panel=TRAINING)] = None,
    in_batch_negatives: Annotated[bool, typer.Option(
        "--in-batch-negatives/--no-in-batch-negatives", help="Score each query against every passage of the batch.",
        rich_help_panel=TRAINING)] = _default("in_batch_negatives"),
    cross_device_negatives: Annotated[bool, typer.Option(
        "--cross-device-negatives/--no-cross-device-negatives", help="Under DDP, gather the passages of all "
        "processes as negatives.", rich_help_panel=TRAINING)] = _default("cross_device_negatives"),
    temperature: Annotated[float, typer.Option(
        "--temperature", help="InfoNCE temperature (cosine similarities).",
        rich_help_panel=TRAINING)] = _default("temperature"),
    epochs: Annotated[float, typer.Option("--epochs", help="Passes over the training queries.",
                                          rich_help_panel=TRAINING)] = _default("epochs"),
    max_steps: Annotated[int | None, typer.Option(
        "--max-steps", min=1, help="Stop after this many optimizer steps (overrides --epochs).",
        rich_help_panel=TRAINING)] = None,
    learning_rate: Annotated[float | None, typer.Option(
        "--lr", help="Peak learning rate. Default: the model's recipe with LoRA (1e-4), 1e-5 with --full.",
        rich_help_panel=TRAINING)] = None,
    lora_targets: Annotated[str, typer.Option(
        "--lora-targets", help="Comma-separated module names, or all-linear (every attention and MLP projection).",
        rich_help_panel=TRAINING)] = LORA_TARGET_SEPARATOR.join(_default("lora_targets")),
    merge: Annotated[bool, typer.Option(
        "--merge", help="Write merged weights (a plain model directory) instead of the adapter.",
        rich_help_panel=TRAINING)] = _default("merge"),
    mrl_dims: Annotated[str | None, typer.Option(
        "--mrl-dims", help="Matryoshka: also train these embedding prefixes (comma-separated dims, e.g. 288,144,64; "
        "the full dim is always trained): InfoNCE summed over each L2-normalised prefix, so `llara encode --dim` "
        "can keep a prefix. Recorded in llara_config.json.", rich_help_panel=TRAINING)] = None,
    mrl_weights: Annotated[str | None, typer.Option(
        "--mrl-weights", help="Matryoshka: one loss weight per trained dim, full dim first (default 1 each).",
        rich_help_panel=TRAINING)] = None,
    pairs_from: Annotated[str | None, typer.Option(
        "--pairs-from", help="corpus: train on pairs the corpus gives by itself, no labels (title -> body, or two "
        "random crops of a document); hard negatives from --negatives-from (a run of the pseudo-queries, ids = "
        "document ids) or else from the model's own dense run over the corpus.", rich_help_panel=DATA)] = None,
    pair_source: Annotated[str, typer.Option(
        "--pair-source", help="auto (title where a document has one, else crops), title or crops.",
        rich_help_panel=DATA)] = _default("pair_source"),
    max_pairs: Annotated[int | None, typer.Option(
        "--max-pairs", min=1, help="Use the first N documents' pairs only.", rich_help_panel=DATA)] = None,
    chunk_size: Annotated[int | None, typer.Option(
        "--chunk-size", min=0, help="Texts per forward pass of the cached contrastive loss (GradCache: the same "
        "gradients in bounded memory, one more forward pass). Default: off when the batch fits in memory, else the "
        "largest chunk that fits; 0: off.", rich_help_panel=TRAINING)] = None,
    query_prompt: QueryPromptOpt = QueryPromptSetting.AUTO.value,
    run_settings: dict[str, Any] | None = None,  # the option groups, added by with_options
    lora_settings: dict[str, Any] | None = None,
    data_settings: dict[str, Any] | None = None,
) -> None:
    """Finetune a (LLaRA-adapted) model for retrieval with hard negatives (RepLLaMA-style, LoRA by default).

    InfoNCE over each query's positive, its hard negatives and the batch's other passages. Writes a LoRA adapter directory that [bold]encode[/] and [bold]search[/] load like any model (merged weights with [bold]--merge[/]); [bold]resumable[/] with --resume. Multi-process: the same command under [cyan]torchrun --nproc_per_node N $(which llara) finetune ...[/]

    Examples:

      [cyan]llara search --bm25 --corpus data/scifact --queries data/scifact --split train --out bm25-train.trec[/]

      [cyan]llara finetune --train data/scifact --negatives-from bm25-train.trec --model out/adapted --out out/finetuned[/]

      [cyan]llara mine --train data/scifact --run bm25-train.trec --out scifact-train.jsonl[/]

      [cyan]llara finetune --train scifact-train.jsonl --group-size 8 --max-steps 200 --out out/ft --merge[/]

    Matryoshka (then `llara encode --dim 144`):

      [cyan]llara finetune --train scifact-train.jsonl --mrl-dims 288,144,64 --max-steps 200 --out out/mrl --merge[/]

    No labels at all: pairs from the corpus itself, negatives from the adapted model's own run:

      [cyan]llara finetune --pairs-from corpus --train data/cranfield --model out/adapted --max-steps 100 --out out/ft-pairs[/]

    The settings start from the model's recipe and are printed first with where each value came from (a flag wins); a batch that would not fit in memory is trained with the cached contrastive loss (--chunk-size) or refused before any weight is loaded.
    """
    from llara_cli.training.finetune import run_finetuning
    from llara_cli.training.recipes import FINETUNE, apply_recipe, describe_choices

    config = FinetuneConfig(
        out_dir=out, train=train, negatives_from=negatives_from, model=model, prompt_family=prompt_family,
        query_max_length=query_max_length, passage_max_length=passage_max_length, group_size=group_size,
        in_batch_negatives=in_batch_negatives, cross_device_negatives=cross_device_negatives,
        temperature=temperature, epochs=epochs, max_steps=max_steps, learning_rate=learning_rate,
        lora_targets=_split_targets(lora_targets), merge=merge,
        mrl_dims=_parse_numbers("--mrl-dims", mrl_dims, int), mrl_weights=_parse_numbers("--mrl-weights", mrl_weights, float),
        chunk_size=chunk_size,
        pairs_from=pairs_from, pair_source=pair_source, max_pairs=max_pairs, query_prompt=query_prompt,
        **(data_settings or {}), **(lora_settings or {}), **(run_settings or {}),
    )
    config, choices = apply_recipe(config, FINETUNE, explicit_options(ctx, RECIPE_PARAMETERS))
    with step_progress("finetuning") as on_log:
        result = run_finetuning(config, on_log=printing_first(describe_choices(model, choices), on_log))
    if not is_main_process():
        return
    if result.dropped_without_negatives:
        typer.echo(f"skipped {result.dropped_without_negatives} queries without hard negatives", err=True)
    resumed = f", resumed from step {result.resumed_from_step}" if result.resumed_from_step else ""
    kind = "LoRA adapter" if result.adapter else "model"
    loss = f", final train loss {result.train_loss:.4f}" if result.train_loss is not None else ""
    steps = f"{result.steps} step" + ("" if result.steps == 1 else "s")
    typer.echo(f"finetuned on {result.examples} queries for {steps}{resumed}{loss}, {config.precision} -> {kind} "
               f"in {out}")
    typer.echo(result.query_prompt.describe())


def register(app: typer.Typer) -> None:
    app.command("finetune")(finetune)
