"""Checkpoints: atomic writes and validated reads (through archc.weights, `weights_only=True`).

A checkpoint is written to a temporary file in the same directory and renamed over the old one,
so a crash or a full disk at any moment leaves the previous checkpoint intact and loadable.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeGuard

import torch
from torch import nn

from archc import weights
from archc.atomic import remove_temps, temp_path
from archc.trainer.errors import CheckpointError
from archc.weights import WeightsError

FORMAT = "archc-checkpoint"
VERSION = 1
REQUIRED = (
    "model", "optimizer", "scheduler", "scaler", "rng", "epoch", "config", "history",
    "best_test_acc", "best_epoch", "train_time_s", "images", "normalization", "spec",
)  # fmt: skip
# Files a run writes in its directory: a new run (no --resume) refuses a
# directory holding any of them.
RUN_FILES = ("last.pt", "best.pt", "metrics.csv", "metrics.jsonl", "result.json")


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write state to path atomically; on failure the previous file at path is untouched."""
    with _replacing(path) as tmp, tmp.open("wb") as f:
        torch.save({"format": FORMAT, "version": VERSION, **state}, f)
        f.flush()
        os.fsync(f.fileno())


def link_checkpoint(source: Path, path: Path) -> None:
    """Make `path` the checkpoint just saved at `source` without serializing it again: a hard link
    renamed over `path`, as atomic as save_checkpoint. The next save of `source` renames a new
    file over its name and leaves this one intact. A file system without hard links gets a copy."""
    with _replacing(path) as tmp:
        try:
            os.link(source, tmp)
        except OSError:
            tmp.unlink(missing_ok=True)
            shutil.copyfile(source, tmp)
            with tmp.open("rb+") as f:
                os.fsync(f.fileno())


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """The temporary file that the block writes, then renamed over `path` and the rename synced;
    on failure it is removed and `path` is untouched (an OSError becomes a CheckpointError)."""
    tmp = temp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException as exc:
        with contextlib.suppress(
            OSError
        ):  # a read-only directory refuses even this; the error below says why
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise CheckpointError(
                f"cannot write checkpoint {path}: "
                f"{exc.strerror or exc}; the previous checkpoint is kept"
            ) from None
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
    """Report archc.weights' problems as CheckpointError, the trainer's
    error for every file it reads."""
    try:
        yield
    except WeightsError as exc:
        raise CheckpointError(str(exc)) from None


def read_torch_file(path: Path) -> Any:
    """archc.weights.read_torch_file (weights_only=True) for the trainer."""
    with checkpoint_errors():
        return weights.read_torch_file(path)


def extract_state_dict(obj: object, path: Path) -> dict[str, torch.Tensor]:
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
        raise CheckpointError(
            f"{path} has checkpoint version {obj.get('version')}; "
            f"this archc reads version {VERSION}"
        )
    missing = [k for k in REQUIRED if k not in obj]
    if missing:
        raise CheckpointError(f"{path} is incomplete: no {', '.join(missing)}")
    return obj


def check_training_state(
    state: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer, path: Path
) -> None:
    """Everything --resume reads, checked before any of it is loaded: a checkpoint with the right
    spec hash can still be hand-edited or crafted, and must fail here
    with one line, not mid-epoch."""
    from archc.trainer.metrics import ALWAYS, COLUMNS

    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"{path} is damaged or crafted: {what}")

    epoch, history = state["epoch"], state["history"]
    if not _is_int(epoch) or epoch < 0:
        raise bad(f"epoch {epoch!r} is not a count of finished epochs")
    if not isinstance(history, list) or len(history) != epoch:
        raise bad(
            f"its history has {len(history) if isinstance(history, list) else 'no'} "
            f"rows for {epoch} finished epochs"
        )
    for i, row in enumerate(history):
        present = [c for c in COLUMNS if c in ALWAYS or (isinstance(row, dict) and c in row)]
        if (
            not isinstance(row, dict)
            or any(not _is_number(row.get(c)) for c in present)
            or row["epoch"] != i + 1
        ):
            missing = [
                c for c in present if not isinstance(row, dict) or not _is_number(row.get(c))
            ]
            raise bad(f"history row {i + 1} lacks numeric {', '.join(missing) or 'epoch number'}")
    for key, low, high in (("best_epoch", 0, epoch), ("images", 0, None)):
        if not _is_int(state[key]) or state[key] < low or (high is not None and state[key] > high):
            raise bad(f"{key} {state[key]!r} is out of range")
    for key in ("best_test_acc", "train_time_s"):
        if not _is_number(state[key]) or not math.isfinite(state[key]) or state[key] < 0:
            raise bad(f"{key} {state[key]!r} is not a finite non-negative number")
    _check_optimizer(state["optimizer"], model, optimizer, bad)


def _check_optimizer(
    saved: object,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    bad: Callable[[str], CheckpointError],
) -> None:
    """The saved optimizer matches this one: same groups and hyperparameter types,
    buffers shaped like the parameters."""
    fresh = optimizer.state_dict()
    if (
        not isinstance(saved, dict)
        or not isinstance(saved.get("state"), dict)
        or not isinstance(saved.get("param_groups"), list)
    ):
        raise bad("its optimizer state is not an optimizer state_dict")
    if len(saved["param_groups"]) != len(fresh["param_groups"]):
        raise bad("its optimizer has a different number of parameter groups")
    for group, like in zip(saved["param_groups"], fresh["param_groups"], strict=True):
        if not isinstance(group, dict) or group.get("params") != like["params"]:
            raise bad("its optimizer's parameter groups do not match the model")
        for key, value in like.items():
            got = group.get(key)
            if isinstance(value, bool) or value is None:
                ok = type(got) is type(value)
            elif _is_number(value):
                ok = _is_number(got) and math.isfinite(got)
            elif isinstance(value, (tuple, list)):
                ok = (
                    isinstance(got, (tuple, list))
                    and len(got) == len(value)
                    and all(_is_number(v) and math.isfinite(v) for v in got)
                )
            else:
                ok = type(got) is type(value)
            if not ok:
                raise bad(f"optimizer setting {key} is {got!r}")
    shapes = {i: p.shape for i, p in enumerate(model.parameters())}
    for index, entry in saved["state"].items():
        if index not in shapes or not isinstance(entry, dict):
            raise bad(f"its optimizer holds state for parameter {index!r}, which the model lacks")
        for name, value in entry.items():
            if value is None:  # SGD without momentum keeps momentum_buffer None
                continue
            if (
                not isinstance(value, torch.Tensor)
                or value.layout != torch.strided
                or value.is_meta
                or value.is_complex()
            ):
                if name == "step" and _is_number(value):
                    continue
                raise bad(f"optimizer state {name} of parameter {index} is not a real dense tensor")
            if name != "step" and value.shape != shapes[index]:
                raise bad(
                    f"optimizer state {name} of parameter {index} is "
                    f"{list(value.shape)}, the parameter {list(shapes[index])}"
                )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def rng_state() -> dict[str, Any]:
    """The torch RNG states of this process (CPU and its own CUDA device) for exact resumption.

    Every data-parallel rank seeds alike and draws alike, so rank 0's states are every rank's.
    Only the process's current device is read: reading every device's state (get_rng_state_all)
    would open a CUDA context, hundreds of MB, on each GPU of the machine from rank 0.
    """
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore rng_state() into this process: the CUDA state into its own (current) device."""
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if isinstance(cuda, (list, tuple)):  # older checkpoints: every device as rank 0 saw it
        cuda = cuda[0] if cuda else None  # rank 0 trained on device 0: the state that advanced
    if cuda is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(cuda)
