"""What a run shows while it trains: rich progress bars on a terminal, plain lines otherwise.

Everything goes to stderr so stdout stays free for the final result row.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from archc.compiler.train_config import LogMode


class Reporter:
    """Plain-line reporter; also the interface the loop calls. Subclasses change how it looks."""

    def message(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        """Called before the first step of an epoch (1-based epoch)."""

    def update(self, step: int, loss: float, acc: float, lr: float, images_per_s: float) -> None:
        """Running train loss and accuracy of the epoch after `step` steps."""

    def end_epoch(self, row: Mapping[str, float], epochs: int) -> None:
        self.message(format_row(row, epochs))

    def close(self) -> None:
        """Release the display."""


def format_row(row: Mapping[str, float], epochs: int) -> str:
    splits = "".join(
        f"{split} loss {row[f'{split}_loss']:.4f} acc {row[f'{split}_acc']:.2%}"
        + (f" top5 {row[f'{split}_top5']:.2%}" if f"{split}_top5" in row else "")
        + "  "
        for split in ("train", "val", "test")
        if f"{split}_loss" in row
    )
    return (
        f"epoch {row['epoch']}/{epochs}  {splits}lr {row['lr']:.3g}  "
        f"{row['images_per_s']:.0f} img/s  {row['epoch_time_s']:.1f}s"
    )


class QuietReporter(Reporter):
    def message(self, text: str) -> None:
        """Say nothing."""

    def end_epoch(self, row: Mapping[str, float], epochs: int) -> None:
        """Say nothing."""


class RichReporter(Reporter):
    """A rich progress bar per epoch with running loss, accuracy, lr and images/s."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(
                "loss {task.fields[loss]:.4f}  acc {task.fields[acc]:.2%}  "
                "lr {task.fields[lr]:.3g}  {task.fields[ips]:.0f} img/s"
            ),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self.task: Any = None
        self.progress.start()

    def message(self, text: str) -> None:
        self.console.print(text, highlight=False, markup=False)

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(
            "", total=steps, epoch=f"{epoch}/{epochs}", loss=0.0, acc=0.0, lr=0.0, ips=0.0
        )

    def update(self, step: int, loss: float, acc: float, lr: float, images_per_s: float) -> None:
        self.progress.update(self.task, completed=step, loss=loss, acc=acc, lr=lr, ips=images_per_s)

    def close(self) -> None:
        self.progress.stop()


def make_reporter(mode: LogMode, main_process: bool) -> Reporter:
    """The reporter for `mode`; only the main process of a data-parallel run reports."""
    if not main_process or mode == "quiet":
        return QuietReporter()
    if mode == "bar" or (mode == "auto" and sys.stderr.isatty()):
        return RichReporter()
    return Reporter()
