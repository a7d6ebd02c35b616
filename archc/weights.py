"""Reading saved weights safely and loading them into a model: `archc build --init-from`, the
trainer's `--init-from`, `--resume` and `archc evaluate` all come through here.

Every read uses `torch.load(weights_only=True)`, so a planted pickle cannot run code. A file that
does not fit is reported in full (missing, unexpected and mis-shaped keys) instead of PyTorch's
wall of text; the parity specs name their layers like torchvision, so torchvision's state_dicts
load strictly.
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archc.compiler import guard
from archc.errors import ArchcError

# Dicts that wrap a state_dict: trainer checkpoints ("model"), `archc build --save` ("state_dict"),
# and the common {"net": ...} of hand-written training scripts.
WRAPPER_KEYS = ("model", "state_dict", "net")
# Prefixes added by DistributedDataParallel and torch.compile; stripped when every key has one.
MODULE_PREFIXES = ("module.", "_orig_mod.")
SHOWN = 10  # keys listed per kind of mismatch
MAX_MEMBERS = 1_000_000  # archive members of a plausible torch file (one per tensor storage)


class WeightsError(ArchcError):
    """A weights file that cannot be read, holds no state_dict, or does not fit the model."""


def read_torch_file(path: str | Path) -> Any:
    """torch.load with weights_only=True, every failure turned into a one-line WeightsError."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"no such file: {path}")
    check_archive_sizes(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter(
                "ignore"
            )  # torch warns about pickle protocols before failing properly
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "unsupported global" in str(exc).lower():
            raise WeightsError(
                f"refusing to load {path}: it holds Python objects beyond "
                "tensors and plain data (loaded with weights_only=True)"
            ) from None
        raise WeightsError(f"{path} is not a readable torch file (corrupt or truncated)") from None
    except Exception as exc:  # arbitrary bytes make torch.load raise nearly any exception type
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(
            f"{path} is not a readable torch file (corrupt or truncated: {first})"
        ) from None


def check_archive_sizes(path: Path, available: int | None = None) -> None:
    """Refuse a torch zip archive whose members would inflate past what is on disk or in memory,
    reading only its directory. torch.save stores members uncompressed, so a compressed member (a
    zip bomb) is refused at once; the total declared size must fit in half the available memory."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return  # not a zip archive: torch.load names the problem (legacy format or junk)
    if len(members) > MAX_MEMBERS:
        raise WeightsError(
            f"{path} is not a plausible torch file: {len(members):,} archive members"
        )
    compressed = next((m for m in members if m.compress_type != zipfile.ZIP_STORED), None)
    if compressed is not None:
        raise WeightsError(
            f"{path} is not a torch file: member {compressed.filename!r} "
            f"is compressed ({compressed.compress_size:,} bytes inflating "
            f"to {compressed.file_size:,}); torch.save never compresses"
        )
    declared = sum(m.file_size for m in members)
    available = guard.available_memory() if available is None else available
    if available is not None and declared > available // 2:
        raise WeightsError(
            f"{path} declares {declared / 1e9:.1f} GB of data, more than half of the "
            f"{available / 1e9:.1f} GB of memory available"
        )


def check_tensors(state: Mapping[str, torch.Tensor], path: str | Path) -> None:
    """Weights must be ordinary tensors with data: sparse, meta and complex tensors would load
    wrongly (complex silently loses its imaginary part) or not at all."""
    for key, value in state.items():
        if value.layout != torch.strided:
            raise WeightsError(
                f"{path}: {key} is a {str(value.layout).removeprefix('torch.')} "
                "tensor; weights must be dense"
            )
        if value.is_meta:
            raise WeightsError(
                f"{path}: {key} is a meta tensor (a shape without data); weights must hold values"
            )
        if value.is_complex():
            raise WeightsError(
                f"{path}: {key} is complex-valued "
                f"({str(value.dtype).removeprefix('torch.')}); weights must be real"
            )


def extract_state_dict(obj: object, path: str | Path) -> dict[str, torch.Tensor]:
    """The model weights in a loaded file: a state_dict, or one under a WRAPPER_KEYS entry."""
    if isinstance(obj, Mapping) and not _is_state_dict(obj):
        for key in WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and _is_state_dict(inner):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not _is_state_dict(obj):
        raise WeightsError(
            f"{path} holds no model weights (expected a state_dict of tensors, "
            f"or one under {', '.join(repr(k) for k in WRAPPER_KEYS)})"
        )
    state = dict(obj)
    for prefix in MODULE_PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The weights saved at `path`, in any layout extract_state_dict accepts."""
    return extract_state_dict(read_torch_file(path), path)


def _is_state_dict(obj: Mapping[object, object]) -> bool:
    return bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


def mismatch_report(
    own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]
) -> list[str]:
    """One entry per kind of problem (missing, unexpected, shape
    mismatch); empty when state fits."""
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {list(state[k].shape)} vs model {list(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    return [
        f"{label} {len(keys)}: {_some(keys)}"
        for label, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("shape mismatch", shapes),
        )
        if keys
    ]


def _some(items: list[str]) -> str:
    more = f" (+{len(items) - SHOWN} more)" if len(items) > SHOWN else ""
    return ", ".join(items[:SHOWN]) + more


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load the weights at `path` into `model` strictly, or raise a
    WeightsError naming every mismatch.

    A failed load leaves the model untouched.
    """
    state = read_state_dict(path)
    check_fits(model, state, path)
    model.load_state_dict(state, strict=True)


def check_fits(model: nn.Module, state: Mapping[str, torch.Tensor], path: str | Path) -> None:
    """Raise a WeightsError naming every key of `state` (read from
    `path`) that does not fit `model`."""
    check_tensors(state, path)
    problems = mismatch_report(model.state_dict(), state)
    if problems:
        raise WeightsError(f"weights in {path} do not fit the model: {'; '.join(problems)}")


__all__ = [
    "WeightsError",
    "check_archive_sizes",
    "check_fits",
    "check_tensors",
    "extract_state_dict",
    "load_weights",
    "mismatch_report",
    "read_state_dict",
    "read_torch_file",
]
