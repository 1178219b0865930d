"""`llara adapt`: LLaRA post-hoc adaptation (EBAE + EBAR) on unlabeled text."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from llara_cli.cli.options import (
    DEFAULT_DTYPE, DEFAULT_MODEL, MaxLengthOpt, ModelOpt, OutDirOpt, OverwriteOpt, PromptFamilyOpt, SeedOpt, TrustRemoteCodeOpt,
)

EXIT_INTERRUPTED = 130
TRAINING = "Training"
DATA = "Data"
RUN = "Checkpoints and logs"


def adapt(
    corpus: Annotated[Path, typer.Option(
        "--corpus", "-c", help="Unlabeled text: a corpus (jsonl, BEIR dir, tsv), plain text (one document a line), "
        "the released pretraining jsonl, or native {\"text\",\"next\"} jsonl.", rich_help_panel=DATA)],
    out: OutDirOpt,
    model: ModelOpt = DEFAULT_MODEL,
    data_format: Annotated[str, typer.Option(
        "--format", help="auto, corpus, text, released or native.", rich_help_panel=DATA)] = "auto",
    prompt_family: PromptFamilyOpt = None,
    joint: Annotated[bool, typer.Option(
        "--joint/--no-joint", help="One forward pass per example for EBAE and EBAR (--no-joint: two passes, "
        "for ablation).")] = True,
    max_length: MaxLengthOpt = 512,
    max_input_tokens: Annotated[Optional[int], typer.Option(
        "--max-input-tokens", min=1, help="Longest input span in tokens; default: all that fits in --max-length.",
        rich_help_panel=DATA)] = None,
    max_examples: Annotated[Optional[int], typer.Option(
        "--max-examples", min=1, help="Use only the first N examples of the corpus (then repeat them).",
        rich_help_panel=DATA)] = None,
    shuffle_buffer: Annotated[int, typer.Option(
        "--shuffle-buffer", min=1, help="Examples held for the streaming shuffle (1: file order).",
        rich_help_panel=DATA)] = 10_000,
    max_steps: Annotated[int, typer.Option("--max-steps", min=1, help="Optimizer steps.",
                                           rich_help_panel=TRAINING)] = 1000,
    batch_size: Annotated[int, typer.Option(
        "--batch-size", "-b", min=1, help="Examples per process per micro-batch; global batch = batch size x "
        "--grad-accum x processes.", rich_help_panel=TRAINING)] = 8,
    grad_accum: Annotated[int, typer.Option("--grad-accum", min=1, help="Gradient accumulation steps.",
                                            rich_help_panel=TRAINING)] = 1,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (paper: 1e-5).",
                                      rich_help_panel=TRAINING)] = 1e-5,
    warmup_ratio: Annotated[float, typer.Option("--warmup-ratio", help="Share of the steps spent warming up.",
                                                rich_help_panel=TRAINING)] = 0.1,
    scheduler: Annotated[str, typer.Option("--scheduler", help="linear, cosine or constant_with_warmup.",
                                           rich_help_panel=TRAINING)] = "linear",
    weight_decay: Annotated[float, typer.Option("--weight-decay", rich_help_panel=TRAINING)] = 0.0,
    max_grad_norm: Annotated[float, typer.Option("--max-grad-norm", help="Gradient clipping (0: off).",
                                                 rich_help_panel=TRAINING)] = 1.0,
    optim: Annotated[str, typer.Option("--optim", help="HF Trainer optimizer name (default AdamW).",
                                       rich_help_panel=TRAINING)] = "adamw_torch",
    precision: Annotated[str, typer.Option(
        "--precision", help="Mixed precision: auto (bf16 on GPUs and CPUs with native bf16, else fp32), fp32, bf16 "
        "or fp16.", rich_help_panel=TRAINING)] = DEFAULT_DTYPE,
    bf16: Annotated[bool, typer.Option("--bf16", help="Same as --precision bf16 (older spelling).",
                                       rich_help_panel=TRAINING)] = False,
    gradient_checkpointing: Annotated[bool, typer.Option(
        "--gradient-checkpointing", help="Recompute activations in the backward pass (less memory).",
        rich_help_panel=TRAINING)] = False,
    lora: Annotated[bool, typer.Option("--lora", help="Train LoRA adapters (merged at the end) instead of all "
                                       "parameters.", rich_help_panel=TRAINING)] = False,
    lora_r: Annotated[int, typer.Option("--lora-r", min=1, rich_help_panel=TRAINING)] = 16,
    lora_alpha: Annotated[int, typer.Option("--lora-alpha", min=1, rich_help_panel=TRAINING)] = 32,
    lora_dropout: Annotated[float, typer.Option("--lora-dropout", rich_help_panel=TRAINING)] = 0.05,
    lm_loss_weight: Annotated[float, typer.Option(
        "--lm-loss-weight", help="Add this times the next-token loss on the text (0: off, as the paper).",
        rich_help_panel=TRAINING)] = 0.0,
    deepspeed: Annotated[Optional[Path], typer.Option(
        "--deepspeed", help="A DeepSpeed json config (under torchrun), e.g. configs/accelerate/deepspeed_zero3.json.",
        rich_help_panel=TRAINING)] = None,
    seed: SeedOpt = 42,
    save_steps: Annotated[int, typer.Option("--save-steps", min=1, help="Checkpoint every N steps.",
                                            rich_help_panel=RUN)] = 500,
    save_total_limit: Annotated[int, typer.Option("--save-total-limit", min=1, help="Checkpoints kept.",
                                                  rich_help_panel=RUN)] = 2,
    logging_steps: Annotated[int, typer.Option("--logging-steps", min=1, help="Log every N steps.",
                                               rich_help_panel=RUN)] = 1,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the last checkpoint in <out>.partial "
                                         "(same settings required).", rich_help_panel=RUN)] = False,
    overwrite: OverwriteOpt = False,
    keep_checkpoints: Annotated[bool, typer.Option(
        "--keep-checkpoints", help="Move the checkpoints into <out>/checkpoints instead of deleting them.",
        rich_help_panel=RUN)] = False,
    trust_remote_code: TrustRemoteCodeOpt = False,
) -> None:
    """Adapt an LLM to dense retrieval with LLaRA's [bold]EBAE + EBAR[/] objective on unlabeled text.

    Writes a model directory that [bold]encode[/], [bold]search[/] and [bold]finetune[/] load (stage "adapted");
    checkpoints and the jsonl log live in [cyan]<out>.partial/[/] until the end.

    Examples:

      [cyan]llara adapt --corpus data/scifact --out runs/adapted --max-steps 300 --batch-size 8 --max-length 256[/]

      [cyan]llara adapt --corpus wiki.txt --format text --out runs/adapted --resume[/]

      [cyan]torchrun --nproc_per_node 2 --no-python llara adapt --corpus data/scifact --out runs/ddp --batch-size 4[/]

    The paper setting (Llama-2-7B, 10k steps, global batch 256 = 8 GPUs x 8 x 4, length 1024, lr 1e-5):

      [cyan]accelerate launch --config_file configs/accelerate/deepspeed_zero3.yaml --num_processes 8 --no_python \\
      llara adapt --model llama-2-7b --corpus pretrain_wiki.jsonl --format released --out runs/llara-7b \\
      --max-steps 10000 --batch-size 8 --grad-accum 4 --max-length 1024 --lr 1e-5 --precision bf16 --gradient-checkpointing[/]

    (docs/adapt.md: data formats, resume, DeepSpeed/FSDP configs.)
    """
    from llara_cli.training.adapt import AdaptConfig, run_adaptation

    _quiet_transformers()
    config = AdaptConfig(
        corpus=corpus, out_dir=out, model=model, data_format=data_format, prompt_family=prompt_family, joint=joint,
        max_length=max_length, max_input_tokens=max_input_tokens, max_examples=max_examples,
        shuffle_buffer=shuffle_buffer, max_steps=max_steps, batch_size=batch_size, grad_accum=grad_accum,
        learning_rate=lr, warmup_ratio=warmup_ratio, scheduler=scheduler, weight_decay=weight_decay,
        max_grad_norm=max_grad_norm, optim=optim, precision=precision, bf16=bf16, gradient_checkpointing=gradient_checkpointing,
        lora=lora, lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, lm_loss_weight=lm_loss_weight,
        seed=seed, save_steps=save_steps, save_total_limit=save_total_limit, logging_steps=logging_steps,
        resume=resume, overwrite=overwrite, keep_checkpoints=keep_checkpoints, deepspeed=deepspeed,
        trust_remote_code=trust_remote_code,
    )
    try:
        with _step_progress(enabled=_is_main_process()) as on_log:
            result = run_adaptation(config, on_log=on_log)
    except KeyboardInterrupt:
        _report_interruption(config.run_dir)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if _is_main_process():
        loss = f", mean loss {result.train_loss:.4f}" if result.train_loss is not None else ""
        resumed = f" (resumed at step {result.resumed_from_step})" if result.resumed_from_step else ""
        typer.echo(f"adapted {model} for {result.steps} steps{resumed}{loss}, {config.precision} -> {result.out_dir}")


def _report_interruption(run_dir: Path) -> None:
    from rich.console import Console

    from llara_cli.training.trainer_utils import last_checkpoint

    if not _is_main_process():
        return
    checkpoint = last_checkpoint(run_dir)
    message = (f"[yellow]interrupted[/]: {checkpoint} is kept; rerun the same command with --resume to continue"
               if checkpoint else "[yellow]interrupted[/] before the first checkpoint: nothing to resume")
    Console(stderr=True).print(message, highlight=False, soft_wrap=True)


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _quiet_transformers() -> None:
    """The per-file progress bars and notices of transformers would interleave with ours."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


@contextlib.contextmanager
def _step_progress(*, enabled: bool) -> Iterator[Callable[[dict[str, Any]], None] | None]:
    """A rich bar over optimizer steps showing the loss, tokens/s and the ETA (main process only)."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn("[bold]adapting"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]} tok/s"),
        TimeElapsedColumn(), TimeRemainingColumn(),
    )
    task: list[Any] = []

    def on_log(record: dict[str, Any]) -> None:
        if record.get("event") == "start":  # created here, so a resume does not count as speed
            task.append(progress.add_task("adapt", total=record["max_steps"], completed=record["step"],
                                          loss="-", rate="-"))
        elif record.get("event") == "step" and task:
            progress.update(task[0], completed=record["step"], loss=f"{record['loss']:.4f}",
                            rate=f"{record.get('tokens_per_s', 0):,.0f}")

    with progress:
        yield on_log


def register(app: typer.Typer) -> None:
    app.command("adapt")(adapt)
