"""Rich progress bars for long jobs; the library reports through plain callbacks."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.progress import (
    BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn, TimeRemainingColumn,
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
