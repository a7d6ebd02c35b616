"""Run records on disk: per-epoch metrics.csv / metrics.jsonl and the final result.json.

The metrics files are rewritten whole from the history stored in the checkpoint, so after a
kill and --resume they hold exactly one row per completed epoch.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import platform
import resource
import sys
from pathlib import Path
from typing import Any

import torch

from archc.atomic import temp_path
from archc.trainer.errors import TrainError

# Every per-epoch column in file order; a run writes those its rows have (val_* with a validation
# split, *_top5 where there are more than 10 classes).
COLUMNS = (
    "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "val_top5",
    "test_loss", "test_acc", "test_top5", "lr", "epoch_time_s", "images_per_s",
)  # fmt: skip
# Those every epoch has; the others only where they apply.
ALWAYS = (
    "epoch",
    "train_loss",
    "train_acc",
    "test_loss",
    "test_acc",
    "lr",
    "epoch_time_s",
    "images_per_s",
)


def atomic_write_text(path: Path, text: str) -> None:
    """Write text via a temporary file and a rename, so readers never see half a file."""
    tmp = temp_path(
        path
    )  # named with this process's token: a later run removes it if we are killed
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise TrainError(f"cannot write {path}: {exc.strerror or exc}") from None


def write_metrics(out: Path, history: list[dict[str, Any]]) -> None:
    """(Re)write OUT/metrics.csv and OUT/metrics.jsonl from the per-epoch history."""
    columns = [k for k in COLUMNS if any(k in row for row in history)]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: _csv_value(row.get(k)) for k in columns})
    atomic_write_text(out / "metrics.csv", buffer.getvalue())
    atomic_write_text(
        out / "metrics.jsonl",
        "".join(json.dumps({k: row[k] for k in columns if k in row}) + "\n" for row in history),
    )


def _csv_value(value: object) -> object:
    return f"{value:.6g}" if isinstance(value, float) and math.isfinite(value) else value


def write_result(out: Path, record: dict[str, Any]) -> None:
    atomic_write_text(out / "result.json", json.dumps(record, indent=2, sort_keys=False) + "\n")


def library_versions() -> dict[str, str]:
    import numpy
    import torchvision

    from archc import __version__

    return {
        "archc": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }


def peak_memory(device: torch.device) -> tuple[int, str]:
    """(bytes, kind): CUDA's max_memory_allocated on a GPU, else the process's peak resident set."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "cuda_max_memory_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024), "peak_rss"
