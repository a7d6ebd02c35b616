"""Checkpoints: atomic writes, validated `weights_only` reads, and weights loading for --init-from.

A checkpoint is written to a temporary file in the same directory and renamed over the old one,
so a crash or a full disk at any moment leaves the previous checkpoint intact and loadable.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archc.train.errors import CheckpointError

FORMAT = "archc-checkpoint"
VERSION = 1
REQUIRED = (
    "model", "optimizer", "scheduler", "scaler", "rng", "epoch", "config", "history", "best_test_acc", "best_epoch",
    "train_time_s", "images", "normalization", "spec",
)  # fmt: skip
WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # added by DistributedDataParallel and torch.compile
TEMP_MARK = ".tmp-"


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write state to path atomically; on failure the previous file at path is untouched."""
    tmp = path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}")
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


def remove_stale_temps(directory: Path) -> None:
    """Delete temporary checkpoint files a killed run left behind (call while holding the run lock)."""
    for tmp in directory.glob(f".*{TEMP_MARK}*"):
        tmp.unlink(missing_ok=True)


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


def read_torch_file(path: Path) -> Any:
    """torch.load with weights_only=True, every failure turned into a one-line CheckpointError."""
    if not path.is_file():
        raise CheckpointError(f"no such checkpoint: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about pickle protocols before failing properly
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "unsupported global" in str(exc).lower():
            raise CheckpointError(
                f"refusing to load {path}: it holds Python objects beyond tensors and plain data (loaded with weights_only=True)"
            ) from None
        raise CheckpointError(f"{path} is not a readable torch file (corrupt or truncated)") from None
    except Exception as exc:  # arbitrary bytes make torch.load raise nearly any exception type
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path} is not a readable torch file (corrupt or truncated: {first})") from None


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


def extract_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The model weights inside a state_dict file, an archc checkpoint or a {'model'|'state_dict'|'net': ...} dict."""
    if isinstance(obj, dict) and not _is_state_dict(obj):
        for key in ("model", "state_dict", "net"):
            if key in obj and isinstance(obj[key], dict) and _is_state_dict(obj[key]):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not _is_state_dict(obj):
        raise CheckpointError(f"{path} holds no model weights (expected a state_dict of tensors)")
    for prefix in WRAPPER_PREFIXES:
        if all(k.startswith(prefix) for k in obj):
            obj = {k[len(prefix) :]: v for k, v in obj.items()}
    return obj


def _is_state_dict(obj: dict[Any, Any]) -> bool:
    return bool(obj) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load weights into model, or raise one line naming missing, unexpected and mis-shaped keys."""
    path = Path(path)
    state = extract_state_dict(read_torch_file(path), path)
    check_compatible(model, state, path)
    model.load_state_dict(state)


def check_compatible(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k} {list(state[k].shape)} vs model {list(own[k].shape)}" for k in own if k in state and state[k].shape != own[k].shape
    ]
    problems = [
        f"{label}: {_some(keys)}" for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)) if keys
    ]
    if problems:
        raise CheckpointError(f"weights in {path} do not fit the model: {'; '.join(problems)}")


def _some(items: list[str], limit: int = 5) -> str:
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


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
