"""`llara finetune`: RepLLaMA-style contrastive finetuning with LoRA and hard negatives."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from llara_cli.cli.options import (
    DEFAULT_DTYPE, DEFAULT_MODEL, Bf16AliasOpt, ModelOpt, OutDirOpt, OverwriteOpt, PrecisionOpt, PromptFamilyOpt, SeedOpt,
    TrustRemoteCodeOpt,
)
from llara_cli.data.finetune import (
    DEFAULT_DEPTH, DEFAULT_MIN_RELEVANCE, DEFAULT_NUM_NEGATIVES, DEFAULT_SKIP, DEFAULT_SPLIT,
)
from llara_cli.errors import UsageError

TrainOpt = Annotated[
    Optional[str],
    typer.Option("--train", "-t", help="A training jsonl ({query, pos, neg}), or a BEIR directory / collection "
                 "name (positives from its qrels, negatives mined from --negatives-from)."),
]
QueriesPartOpt = Annotated[Optional[str], typer.Option("--queries", help="Queries file (overrides the collection's).")]
QrelsPartOpt = Annotated[Optional[str], typer.Option("--qrels", "-q", help="Qrels file (overrides the collection's).")]
CorpusPartOpt = Annotated[Optional[str], typer.Option("--corpus", help="Corpus file (overrides the collection's).")]
TrainSplitOpt = Annotated[str, typer.Option("--split", help="Qrels split of a BEIR-layout collection.")]
SkipOpt = Annotated[int, typer.Option("--skip", min=0, help="Never take negatives from the run's top SKIP ranks.")]
DepthOpt = Annotated[int, typer.Option("--depth", min=1, help="Sample negatives from ranks up to DEPTH.")]
NumNegativesOpt = Annotated[int, typer.Option("--num-negatives", min=1, help="Hard negatives kept per query.")]
MinRelevanceOpt = Annotated[int, typer.Option("--min-relevance", help="Judgements >= this are positives.")]
LORA_TARGET_SEPARATOR = ","


def _split_targets(text: str) -> tuple[str, ...]:
    targets = tuple(part.strip() for part in text.split(LORA_TARGET_SEPARATOR) if part.strip())
    if not targets:
        raise UsageError("--lora-targets needs at least one module name, e.g. q_proj,v_proj or all-linear")
    return targets


def finetune(
    out: OutDirOpt,
    train: TrainOpt = None,
    model: ModelOpt = DEFAULT_MODEL,
    negatives_from: Annotated[Optional[Path], typer.Option("--negatives-from", help="TREC run to mine hard negatives from (a collection --train only).")] = None,
    queries: QueriesPartOpt = None,
    qrels: QrelsPartOpt = None,
    corpus: CorpusPartOpt = None,
    split: TrainSplitOpt = DEFAULT_SPLIT,
    skip: SkipOpt = DEFAULT_SKIP,
    depth: DepthOpt = DEFAULT_DEPTH,
    num_negatives: NumNegativesOpt = DEFAULT_NUM_NEGATIVES,
    min_relevance: MinRelevanceOpt = DEFAULT_MIN_RELEVANCE,
    prompt_family: PromptFamilyOpt = None,
    query_max_length: Annotated[int, typer.Option("--query-max-length", min=8, help="Tokens per query, prompt included.")] = 32,
    passage_max_length: Annotated[int, typer.Option("--passage-max-length", min=8, help="Tokens per passage, prompt included.")] = 196,
    group_size: Annotated[Optional[int], typer.Option("--group-size", min=1, help="Passages per query: 1 positive + n-1 hard negatives. Default: 16 on GPU, 4 on CPU.")] = None,
    in_batch_negatives: Annotated[bool, typer.Option("--in-batch-negatives/--no-in-batch-negatives", help="Score each query against every passage of the batch.")] = True,
    cross_device_negatives: Annotated[bool, typer.Option("--cross-device-negatives/--no-cross-device-negatives", help="Under DDP, gather the passages of all processes as negatives.")] = True,
    temperature: Annotated[float, typer.Option("--temperature", help="InfoNCE temperature (cosine similarities).")] = 0.01,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Queries per process and micro-batch.")] = 8,
    grad_accum: Annotated[int, typer.Option("--grad-accum", min=1, help="Micro-batches per optimizer step.")] = 1,
    epochs: Annotated[float, typer.Option("--epochs", help="Passes over the training queries.")] = 1.0,
    max_steps: Annotated[Optional[int], typer.Option("--max-steps", min=1, help="Stop after this many optimizer steps (overrides --epochs).")] = None,
    learning_rate: Annotated[Optional[float], typer.Option("--lr", help="Peak learning rate. Default: 1e-4 with LoRA, 1e-5 with --full.")] = None,
    warmup_ratio: Annotated[float, typer.Option("--warmup-ratio", help="Fraction of the steps spent warming up.")] = 0.1,
    scheduler: Annotated[str, typer.Option("--scheduler", help="linear, cosine or constant_with_warmup.")] = "linear",
    weight_decay: Annotated[float, typer.Option("--weight-decay")] = 0.0,
    max_grad_norm: Annotated[float, typer.Option("--max-grad-norm", help="Gradient clipping (0: off).")] = 1.0,
    optim: Annotated[str, typer.Option("--optim", help="Optimizer name of the HF Trainer (adamw_torch, sgd, adafactor...).")] = "adamw_torch",
    precision: PrecisionOpt = DEFAULT_DTYPE,
    bf16: Bf16AliasOpt = False,
    gradient_checkpointing: Annotated[bool, typer.Option("--gradient-checkpointing", help="Recompute activations in the backward pass (less memory, slower).")] = False,
    full: Annotated[bool, typer.Option("--full", help="Finetune every weight instead of LoRA adapters.")] = False,
    lora_r: Annotated[int, typer.Option("--lora-r", min=1, help="LoRA rank.")] = 32,
    lora_alpha: Annotated[int, typer.Option("--lora-alpha", min=1, help="LoRA alpha.")] = 64,
    lora_dropout: Annotated[float, typer.Option("--lora-dropout", help="LoRA dropout.")] = 0.1,
    lora_targets: Annotated[str, typer.Option("--lora-targets", help="Comma-separated module names, or all-linear (every attention and MLP projection).")] = "all-linear",
    merge: Annotated[bool, typer.Option("--merge", help="Write merged weights (a plain model directory) instead of the adapter.")] = False,
    seed: SeedOpt = 42,
    save_steps: Annotated[int, typer.Option("--save-steps", min=1, help="Checkpoint every N steps.")] = 500,
    save_total_limit: Annotated[int, typer.Option("--save-total-limit", min=0, help="Checkpoints kept (0: all).")] = 2,
    logging_steps: Annotated[int, typer.Option("--logging-steps", min=1, help="Log every N steps.")] = 1,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from its last checkpoint.")] = False,
    keep_checkpoints: Annotated[bool, typer.Option("--keep-checkpoints", help="Keep the checkpoints in OUT/checkpoints.")] = False,
    overwrite: OverwriteOpt = False,
    trust_remote_code: TrustRemoteCodeOpt = False,
) -> None:
    """Finetune a (LLaRA-adapted) model for retrieval with hard negatives (RepLLaMA-style, LoRA by default).

    InfoNCE over each query's positive, its hard negatives and the batch's other passages. Writes a LoRA adapter directory that [bold]encode[/] and [bold]search[/] load like any model (merged weights with [bold]--merge[/]); [bold]resumable[/] with --resume. Multi-process: the same command under [cyan]torchrun --nproc_per_node N $(which llara) finetune ...[/]

    Examples:

      [cyan]llara search --bm25 --corpus data/scifact --queries data/scifact --split train --out bm25-train.trec[/]

      [cyan]llara finetune --train data/scifact --negatives-from bm25-train.trec --model out/adapted --out out/finetuned[/]

      [cyan]llara mine --train data/scifact --run bm25-train.trec --out scifact-train.jsonl[/]

      [cyan]llara finetune --train scifact-train.jsonl --group-size 8 --max-steps 200 --out out/ft --merge[/]
    """
    from llara_cli.training.finetune import FinetuneConfig, run_finetuning

    config = FinetuneConfig(
        out_dir=out, train=train, queries=queries, qrels=qrels, corpus=corpus, split=split,
        negatives_from=negatives_from, skip=skip, depth=depth, num_negatives=num_negatives,
        min_relevance=min_relevance, model=model, prompt_family=prompt_family, query_max_length=query_max_length,
        passage_max_length=passage_max_length, group_size=group_size, in_batch_negatives=in_batch_negatives,
        cross_device_negatives=cross_device_negatives, temperature=temperature, batch_size=batch_size,
        grad_accum=grad_accum, epochs=epochs, max_steps=max_steps, learning_rate=learning_rate,
        warmup_ratio=warmup_ratio, scheduler=scheduler, weight_decay=weight_decay, max_grad_norm=max_grad_norm, optim=optim,
        precision=precision, bf16=bf16, gradient_checkpointing=gradient_checkpointing, lora=not full, lora_r=lora_r,
        lora_alpha=lora_alpha, lora_dropout=lora_dropout, lora_targets=_split_targets(lora_targets), merge=merge,
        seed=seed, save_steps=save_steps, save_total_limit=save_total_limit or None, logging_steps=logging_steps,
        resume=resume, overwrite=overwrite, keep_checkpoints=keep_checkpoints, trust_remote_code=trust_remote_code,
    )
    with _step_progress() as on_log:
        result = run_finetuning(config, on_log=on_log)
    if not _is_main_process():
        return
    if result.dropped_without_negatives:
        typer.echo(f"skipped {result.dropped_without_negatives} queries without hard negatives", err=True)
    resumed = f", resumed from step {result.resumed_from_step}" if result.resumed_from_step else ""
    kind = "LoRA adapter" if result.adapter else "model"
    loss = f", final train loss {result.train_loss:.4f}" if result.train_loss is not None else ""
    steps = f"{result.steps} step" + ("" if result.steps == 1 else "s")
    typer.echo(f"finetuned on {result.examples} queries for {steps}{resumed}{loss}, {config.precision} -> {kind} in {out}")


def _is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


@contextlib.contextmanager
def _step_progress() -> Iterator[Callable[[dict[str, Any]], None] | None]:
    """Yields an ``on_log`` callback driving a rich bar over optimizer steps (with the loss) on the main process."""
    if not _is_main_process():
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    progress = Progress(TextColumn("[bold]finetuning"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[loss]}"),
                        TimeElapsedColumn(), TimeRemainingColumn())
    tasks: list = []

    def on_log(record: dict[str, Any]) -> None:
        if not tasks:
            tasks.append(progress.add_task("finetuning", total=record.get("max_steps"),
                                           completed=record.get("step", 0), loss=""))
        fields = {}
        if "loss" in record:
            fields["loss"] = f"loss {record['loss']:.4f}  acc {record.get('accuracy', float('nan')):.2f}"
        progress.update(tasks[0], completed=record.get("step", 0), **fields)

    with progress:
        yield on_log


def register(app: typer.Typer) -> None:
    app.command("finetune")(finetune)
