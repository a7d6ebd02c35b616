"""TensorBoard logging (torch.utils.tensorboard) beside metrics.csv: `tensorboard --logdir runs`.

Like metrics.csv, the log is rewritten from the checkpointed history when a run starts or resumes,
so after a kill and --resume it holds each completed epoch once.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archc.trainer.progress import Reporter

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

DIRNAME = "tensorboard"
# Metric column -> TensorBoard tag: grouped by kind, so train/val/test curves share a chart.
TAGS = {
    "train_loss": "loss/train", "val_loss": "loss/val", "test_loss": "loss/test",
    "train_acc": "accuracy/train", "val_acc": "accuracy/val", "test_acc": "accuracy/test",
    "val_top5": "top5/val", "test_top5": "top5/test",
    "lr": "lr", "images_per_s": "throughput/images_per_s",
}  # fmt: skip


class TensorBoardLog:
    """One SummaryWriter in OUT/tensorboard; a scalar per metric, the step being the epoch.

    The log is a convenience: a disk that refuses it (full, read-only) turns it off with a note and
    never stops the run, whose checkpoints and metrics report their own write errors."""

    def __init__(self, writer: SummaryWriter, reporter: Reporter) -> None:
        self.writer: SummaryWriter | None = writer
        self.reporter = reporter

    @classmethod
    def open(
        cls, out: Path, history: list[dict[str, Any]], reporter: Reporter
    ) -> TensorBoardLog | None:
        """A log holding `history` already, or None (with a note)
        where tensorboard is not installed."""
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            reporter.message(
                "note: TensorBoard logging is off: the tensorboard "
                "package is not installed (pip install tensorboard)"
            )
            return None
        directory = out / DIRNAME
        shutil.rmtree(directory, ignore_errors=True)
        _quiet_writer_thread(reporter)
        try:
            log = cls(SummaryWriter(log_dir=str(directory)), reporter)
        except OSError as exc:
            reporter.message(f"note: TensorBoard logging is off: {exc.strerror or exc}")
            return None
        for row in history:
            log.epoch(row, flush=False)
        log.epoch({}, flush=True)
        return log

    def epoch(self, row: dict[str, Any], flush: bool = True) -> None:
        if self.writer is None:
            return
        try:
            for key, tag in TAGS.items():
                if key in row:
                    self.writer.add_scalar(tag, row[key], global_step=row["epoch"])
            if flush:
                self.writer.flush()
        except OSError as exc:
            self.reporter.message(f"note: TensorBoard logging is off: {exc.strerror or exc}")
            self.writer = None

    def close(self) -> None:
        if self.writer is not None:
            with contextlib.suppress(OSError):
                self.writer.close()
        threading.excepthook = threading.__excepthook__


def _quiet_writer_thread(reporter: Reporter) -> None:
    """TensorBoard writes events from a thread of its own; a write the disk refuses there becomes a
    note instead of a thread traceback (the run's own writes report the disk's state)."""

    def hook(args: threading.ExceptHookArgs) -> None:
        frames = traceback.extract_tb(args.exc_traceback) if args.exc_traceback else []
        if isinstance(args.exc_value, OSError) and any(
            "tensorboard" in frame.filename for frame in frames
        ):
            reporter.message(
                f"note: TensorBoard logging is off: {args.exc_value.strerror or args.exc_value}"
            )
            return
        threading.__excepthook__(args)

    threading.excepthook = hook
