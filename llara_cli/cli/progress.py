"""Rich progress bars for long jobs; the library reports through plain callbacks."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class RateColumn(ProgressColumn):
    """Items per second, e.g. ``152.3 passages/s``."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.1f} {self.unit}/s" if speed else f"- {self.unit}/s", style="progress.data.speed")


@contextlib.contextmanager
def item_progress(description: str, unit: str) -> Iterator[tuple]:
    """Yields ``(on_start(total, done), on_advance(n))`` callbacks driving one progress bar on stderr."""
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(unit),
        TimeElapsedColumn(), TimeRemainingColumn(), transient=False,
    )
    with progress:
        task = progress.add_task(description, total=None)

        def on_start(total: int, done: int) -> None:
            progress.update(task, total=total, completed=done)

        def on_advance(count: int) -> None:
            progress.advance(task, count)

        yield on_start, on_advance


def is_main_process() -> bool:
    """Rank 0 of a torchrun / accelerate launch (or the only process): the one that prints."""
    return int(os.environ.get("RANK", "0")) == 0


def printing_first(lines: list[str], on_log: Callable[[dict[str, Any]], None] | None):
    """``on_log`` that first prints ``lines`` (a run's settings) to stderr when the run's first record arrives --
    after the cheap checks, so a bad option stays a one-line error -- and prints the lines of ``plan`` records
    (memory, chunk size) instead of passing them on."""
    if on_log is None:
        return None
    pending = list(lines)

    def on_record(record: dict[str, Any]) -> None:
        import typer

        while pending:
            typer.echo(pending.pop(0), err=True)
        if record.get("event") == "plan":
            for line in record.get("lines", ()):
                typer.echo(line, err=True)
            return
        on_log(record)

    return on_record


@contextlib.contextmanager
def step_progress(verb: str) -> Iterator[Callable[[dict[str, Any]], None] | None]:
    """Yields an ``on_log`` callback driving a bar over optimizer steps (loss, accuracy if logged, tokens/s, ETA)
    from the records of ``train_log.jsonl``; None on the other processes."""
    if not is_main_process():
        yield None
        return
    progress = Progress(
        TextColumn(f"[bold]{verb}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[metrics]}"),
        TimeElapsedColumn(), TimeRemainingColumn(),
    )
    task: list[Any] = []

    def on_log(record: dict[str, Any]) -> None:
        if record.get("event") == "start":  # created here, so a resume does not count as speed
            task.append(progress.add_task(verb, total=record["max_steps"], completed=record["step"], metrics=""))
        elif record.get("event") == "step" and task:
            metrics = [f"loss {record['loss']:.4f}"] if "loss" in record else []
            if "accuracy" in record:
                metrics.append(f"acc {record['accuracy']:.2f}")
            metrics.append(f"{record.get('tokens_per_s', 0):,.0f} tok/s")
            progress.update(task[0], completed=record["step"], metrics="  ".join(metrics))

    with progress:
        yield on_log
