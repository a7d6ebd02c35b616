"""TensorBoard logging (torch.utils.tensorboard) beside metrics.csv: `tensorboard --logdir runs`.

Like metrics.csv, the log is rewritten from the checkpointed history when a run starts or resumes,
so after a kill and --resume it holds each completed epoch once.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from archc.trainer.progress import Reporter

DIRNAME = "tensorboard"
# Metric column -> TensorBoard tag: grouped by kind, so train/val/test curves share a chart.
TAGS = {
    "train_loss": "loss/train", "val_loss": "loss/val", "test_loss": "loss/test",
    "train_acc": "accuracy/train", "val_acc": "accuracy/val", "test_acc": "accuracy/test",
    "val_top5": "top5/val", "test_top5": "top5/test",
    "lr": "lr", "images_per_s": "throughput/images_per_s",
}  # fmt: skip


class TensorBoardLog:
    """One SummaryWriter in OUT/tensorboard; a scalar per metric, the step being the epoch."""

    def __init__(self, writer: Any) -> None:
        self.writer = writer

    @classmethod
    def open(cls, out: Path, history: list[dict[str, Any]], reporter: Reporter) -> TensorBoardLog | None:
        """A log holding `history` already, or None (with a note) where tensorboard is not installed."""
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            reporter.message("note: TensorBoard logging is off: the tensorboard package is not installed (pip install tensorboard)")
            return None
        directory = out / DIRNAME
        shutil.rmtree(directory, ignore_errors=True)
        log = cls(SummaryWriter(log_dir=str(directory)))
        for row in history:
            log.epoch(row, flush=False)
        log.writer.flush()
        return log

    def epoch(self, row: dict[str, Any], flush: bool = True) -> None:
        for key, tag in TAGS.items():
            if key in row:
                self.writer.add_scalar(tag, row[key], global_step=row["epoch"])
        if flush:
            self.writer.flush()

    def close(self) -> None:
        self.writer.close()
