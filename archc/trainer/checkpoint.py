"""Checkpoints: atomic writes and validated reads (through archc.weights, `weights_only=True`).

A checkpoint is written to a temporary file in the same directory and renamed over the old one,
so a crash or a full disk at any moment leaves the previous checkpoint intact and loadable.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archc import weights
from archc.atomic import remove_temps, temp_path
from archc.trainer.errors import CheckpointError
from archc.weights import WeightsError

FORMAT = "archc-checkpoint"
VERSION = 1
REQUIRED = (
    "model", "optimizer", "scheduler", "scaler", "rng", "epoch", "config", "history", "best_test_acc", "best_epoch",
    "train_time_s", "images", "normalization", "spec",
)  # fmt: skip
# Files a run writes in its directory: a new run (no --resume) refuses a directory holding any of them.
RUN_FILES = ("last.pt", "best.pt", "metrics.csv", "metrics.jsonl", "result.json")


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write state to path atomically; on failure the previous file at path is untouched."""
    tmp = temp_path(path)
    try:
        with tmp.open("wb") as f:
            torch.save({"format": FORMAT, "version": VERSION, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException as exc:
        with contextlib.suppress(OSError):  # a read-only directory refuses even this; the error below says why
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise CheckpointError(f"cannot write checkpoint {path}: {exc.strerror or exc}; the previous checkpoint is kept") from None
        raise


def remove_stale_temps(directory: Path, token: object) -> None:
    """Delete the temporary files a killed run left behind: only those named with its token, which
    its run lock recorded (call while holding the lock), never a user's file that looks alike."""
    remove_temps(directory, token)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable where the OS allows syncing a directory."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def checkpoint_errors() -> Iterator[None]:
    """Report archc.weights' problems as CheckpointError, the trainer's error for every file it reads."""
    try:
        yield
    except WeightsError as exc:
        raise CheckpointError(str(exc)) from None


def read_torch_file(path: Path) -> Any:
    """archc.weights.read_torch_file (weights_only=True) for the trainer."""
    with checkpoint_errors():
        return weights.read_torch_file(path)


def extract_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    with checkpoint_errors():
        return weights.extract_state_dict(obj, path)


def load_weights(model: nn.Module, path: str | Path) -> None:
    """archc.weights.load_weights for --init-from and evaluate: strict, every mismatch named."""
    with checkpoint_errors():
        weights.load_weights(model, path)


def check_compatible(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    with checkpoint_errors():
        weights.check_fits(model, state, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A training checkpoint written by save_checkpoint, checked for format and completeness."""
    obj = read_torch_file(path)
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an archc training checkpoint")
    if obj.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {obj.get('version')}; this archc reads version {VERSION}")
    missing = [k for k in REQUIRED if k not in obj]
    if missing:
        raise CheckpointError(f"{path} is incomplete: no {', '.join(missing)}")
    return obj


def rng_state() -> dict[str, Any]:
    """The global torch RNG states (CPU and every CUDA device) for exact resumption."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
