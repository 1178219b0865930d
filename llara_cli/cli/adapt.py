"""`llara adapt`: LLaRA post-hoc adaptation (EBAE + EBAR) on unlabeled text."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from llara_cli.cli.options import (
    DATA,
    DEFAULT_MODEL,
    LORA_OPTIONS,
    RUN_OPTIONS,
    TRAINING,
    ModelOpt,
    OutDirOpt,
    QueryPromptOpt,
    config_default,
    explicit_options,
    options_of,
    with_options,
)
from llara_cli.cli.progress import is_main_process, printing_first, step_progress
from llara_cli.core.prompts import PromptFamily
from llara_cli.errors import EXIT_INTERRUPTED
from llara_cli.training.adapt import AdaptConfig
from llara_cli.training.query_prompt_choice import QueryPromptSetting

OBJECTIVE = "Objective"
RECIPE_PARAMETERS = {"lr": "learning_rate", "max_steps": "max_steps", "batch_size": "batch_size",
                     "max_length": "max_length", "prompt_family": "prompt_family", "objective": "objective"}
AdaptPromptFamilyOpt = Annotated[PromptFamily | None, typer.Option(
    "--prompt-family", help="paper or flagembedding; default: the model's saved family; for a plain model, flagembedding (the "
    "released code's form, measured better than the paper's from 100 steps on: docs/adapt.md).")]


def _default(name: str):
    return config_default(AdaptConfig, name)


@with_options(RUN_OPTIONS, "run_settings")
@with_options(options_of(AdaptConfig, LORA_OPTIONS), "lora_settings")
def adapt(
    ctx: typer.Context,
    corpus: Annotated[Path, typer.Option(
        "--corpus", "-c", help="Unlabeled text: a corpus (jsonl, BEIR dir, tsv), plain text (one document a line), "
        "the released pretraining jsonl, or native {\"text\",\"next\"} jsonl.", rich_help_panel=DATA)],
    out: OutDirOpt,
    model: ModelOpt = DEFAULT_MODEL,
    data_format: Annotated[str, typer.Option(
        "--format", help="auto, corpus, text, released or native.", rich_help_panel=DATA)] = _default("data_format"),
    prompt_family: AdaptPromptFamilyOpt = None,
    joint: Annotated[bool, typer.Option(
        "--joint/--no-joint", help="One forward pass per example for EBAE and EBAR (--no-joint: two passes, "
        "for ablation).")] = _default("joint"),
    max_length: Annotated[int, typer.Option(
        "--max-length", min=8, help="Maximum tokens per text, prompt included. Default: the model's recipe "
        "(smollm2-135m: 128; 7B-class: 512).", show_default=False)] = _default("max_length"),
    max_input_tokens: Annotated[int | None, typer.Option(
        "--max-input-tokens", min=1, help="Longest input span in tokens; default: all that fits in --max-length.",
        rich_help_panel=DATA)] = None,
    max_examples: Annotated[int | None, typer.Option(
        "--max-examples", min=1, help="Use only the first N examples of the corpus (then repeat them).",
        rich_help_panel=DATA)] = None,
    shuffle_buffer: Annotated[int, typer.Option(
        "--shuffle-buffer", min=1, help="Examples held for the streaming shuffle (1: file order).",
        rich_help_panel=DATA)] = _default("shuffle_buffer"),
    max_steps: Annotated[int, typer.Option("--max-steps", min=1, help="Optimizer steps. Default: the model's "
                                           "recipe (smollm2-135m: 200; 7B-class: 1000).", show_default=False,
                                           rich_help_panel=TRAINING)] = _default("max_steps"),
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate. Default: the model's recipe (smollm2-135m: "
                                      "1e-4, measured best; 7B-class: the paper's 1e-5).", show_default=False,
                                      rich_help_panel=TRAINING)] = _default("learning_rate"),
    objective: Annotated[str, typer.Option(
        "--objective", help="paper (BoW losses only, as the paper) or released (the authors' code: next-token loss "
        "+ BoW/10, stop words removed from the targets); the four options below override it.",
        rich_help_panel=OBJECTIVE)] = _default("objective"),
    lm_loss_weight: Annotated[float | None, typer.Option(
        "--lm-loss-weight", help="Add this times the next-token loss on the text (paper: 0, released: 1).",
        rich_help_panel=OBJECTIVE)] = None,
    bow_scale: Annotated[float | None, typer.Option(
        "--bow-scale", help="Multiply the BoW loss by this (paper: 1, released: 0.1).",
        rich_help_panel=OBJECTIVE)] = None,
    remove_stop_words: Annotated[bool | None, typer.Option(
        "--remove-stop-words/--keep-stop-words", help="Drop English stop words and punctuation from the BoW "
        "targets (paper: keep, released: remove).", show_default=False, rich_help_panel=OBJECTIVE)] = None,
    exclude_special_targets: Annotated[bool | None, typer.Option(
        "--exclude-special-targets/--keep-special-targets", help="Never use special token ids as BoW targets "
        "(both presets: exclude).", show_default=False, rich_help_panel=OBJECTIVE)] = None,
    query_prompt: QueryPromptOpt = QueryPromptSetting.AUTO.value,
    deepspeed: Annotated[Path | None, typer.Option(
        "--deepspeed", help="A DeepSpeed json config (under torchrun), e.g. configs/accelerate/deepspeed_zero3.json.",
        rich_help_panel=TRAINING)] = None,
    run_settings: dict[str, Any] | None = None,  # the option groups, added by with_options
    lora_settings: dict[str, Any] | None = None,
) -> None:
    """Adapt an LLM to dense retrieval with LLaRA's [bold]EBAE + EBAR[/] objective on unlabeled text.

    Writes a model directory that [bold]encode[/], [bold]search[/] and [bold]finetune[/] load (stage "adapted");
    checkpoints and the jsonl log live in [cyan]<out>.partial/[/] until the end.

    Examples:

      [cyan]llara adapt --corpus data/scifact --out runs/adapted --max-steps 300 --batch-size 8 --max-length 256[/]

      [cyan]llara adapt --corpus data/scifact --out runs/adapted-long --max-steps 3000 --resume[/]
      (rerun the same command after an interruption: it continues from the last checkpoint)

      [cyan]torchrun --nproc_per_node 2 --no-python llara adapt --corpus data/scifact --out runs/ddp --batch-size 4[/]

    The defaults are the model's recipe, printed at the start with where each value came from (a flag wins):
    smollm2-135m gets its measured best (200 steps of 8 x 128 tokens at lr 1e-4), 7B-class models the paper's
    lr 1e-5 at 1000 steps of 512 tokens; both in the released code's form (flagembedding prompts, released
    objective); the paper's prompts and BoW-only loss are --prompt-family paper --objective paper.

    The paper setting (Llama-2-7B, 10k steps, global batch 256 = 8 GPUs x 8 x 4, length 1024, lr 1e-5):

      [cyan]accelerate launch --config_file configs/accelerate/deepspeed_zero3.yaml --num_processes 8 --no_python \\
      llara adapt --model llama-2-7b --corpus pretrain_wiki.jsonl --format released --out runs/llara-7b \\
      --max-steps 10000 --batch-size 8 --grad-accum 4 --max-length 1024 --lr 1e-5 --precision bf16 --gradient-checkpointing[/]

    (docs/adapt.md: data formats, resume, DeepSpeed/FSDP configs.)
    """
    from llara_cli.training.adapt import run_adaptation
    from llara_cli.training.recipes import ADAPT, apply_recipe, describe_choices

    _quiet_transformers()
    config = AdaptConfig(
        corpus=corpus, out_dir=out, model=model, data_format=data_format, prompt_family=prompt_family, joint=joint,
        max_length=max_length, max_input_tokens=max_input_tokens, max_examples=max_examples,
        shuffle_buffer=shuffle_buffer, max_steps=max_steps, learning_rate=lr, objective=objective,
        lm_loss_weight=lm_loss_weight, bow_scale=bow_scale, remove_stop_words=remove_stop_words,
        exclude_special_targets=exclude_special_targets, deepspeed=deepspeed, query_prompt=query_prompt, **(lora_settings or {}), **(run_settings or {}),
    )
    config, choices = apply_recipe(config, ADAPT, explicit_options(ctx, RECIPE_PARAMETERS))
    try:
        with step_progress("adapting") as on_log:
            result = run_adaptation(config, on_log=printing_first(describe_choices(model, choices), on_log))
    except KeyboardInterrupt:
        _report_interruption(config.run_dir)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if is_main_process():
        loss = f", mean loss {result.train_loss:.4f}" if result.train_loss is not None else ""
        resumed = f" (resumed at step {result.resumed_from_step})" if result.resumed_from_step else ""
        typer.echo(f"adapted {model} for {result.steps} steps{resumed}{loss}, {config.precision} -> {result.out_dir}")
        typer.echo(result.query_prompt.describe())


def _report_interruption(run_dir: Path) -> None:
    from rich.console import Console

    from llara_cli.training.trainer_utils import last_checkpoint

    if not is_main_process():
        return
    checkpoint = last_checkpoint(run_dir)
    message = (f"[yellow]interrupted[/]: {checkpoint} is kept; rerun the same command with --resume to continue"
               if checkpoint else "[yellow]interrupted[/] before the first checkpoint: nothing to resume")
    Console(stderr=True).print(message, highlight=False, soft_wrap=True)


def _quiet_transformers() -> None:
    """The per-file progress bars and notices of transformers would interleave with ours."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def register(app: typer.Typer) -> None:
    app.command("adapt")(adapt)
