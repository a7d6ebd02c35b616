"""Reading saved weights safely and loading them into a model: `archc build --init-from`, the trainer's
`--init-from`, `--resume` and `archc evaluate` all come through here.

Every read uses `torch.load(weights_only=True)`, so a planted pickle cannot run code. A file that
does not fit is reported in full (missing, unexpected and mis-shaped keys) instead of PyTorch's
wall of text; the parity specs name their layers like torchvision, so torchvision's state_dicts
load strictly.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archc.errors import ArchcError

# Dicts that wrap a state_dict: trainer checkpoints ("model"), `archc build --save` ("state_dict"),
# and the common {"net": ...} of hand-written training scripts.
WRAPPER_KEYS = ("model", "state_dict", "net")
# Prefixes added by DistributedDataParallel and torch.compile; stripped when every key has one.
MODULE_PREFIXES = ("module.", "_orig_mod.")
SHOWN = 10  # keys listed per kind of mismatch


class WeightsError(ArchcError):
    """A weights file that cannot be read, holds no state_dict, or does not fit the model."""


def read_torch_file(path: str | Path) -> Any:
    """torch.load with weights_only=True, every failure turned into a one-line WeightsError."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"no such file: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about pickle protocols before failing properly
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "unsupported global" in str(exc).lower():
            raise WeightsError(
                f"refusing to load {path}: it holds Python objects beyond tensors and plain data (loaded with weights_only=True)"
            ) from None
        raise WeightsError(f"{path} is not a readable torch file (corrupt or truncated)") from None
    except Exception as exc:  # arbitrary bytes make torch.load raise nearly any exception type
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"{path} is not a readable torch file (corrupt or truncated: {first})") from None


def extract_state_dict(obj: Any, path: str | Path) -> dict[str, torch.Tensor]:
    """The model weights in a loaded file: a state_dict, or one under a WRAPPER_KEYS entry."""
    if isinstance(obj, Mapping) and not _is_state_dict(obj):
        for key in WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and _is_state_dict(inner):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not _is_state_dict(obj):
        raise WeightsError(f"{path} holds no model weights (expected a state_dict of tensors, "
                           f"or one under {', '.join(repr(k) for k in WRAPPER_KEYS)})")
    state = dict(obj)
    for prefix in MODULE_PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The weights saved at `path`, in any layout extract_state_dict accepts."""
    return extract_state_dict(read_torch_file(path), path)


def _is_state_dict(obj: Mapping[Any, Any]) -> bool:
    return bool(obj) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def mismatch_report(own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]) -> list[str]:
    """One entry per kind of problem (missing, unexpected, shape mismatch); empty when state fits."""
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {list(state[k].shape)} vs model {list(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    return [f"{label} {len(keys)}: {_some(keys)}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)) if keys]


def _some(items: list[str]) -> str:
    more = f" (+{len(items) - SHOWN} more)" if len(items) > SHOWN else ""
    return ", ".join(items[:SHOWN]) + more


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load the weights at `path` into `model` strictly, or raise a WeightsError naming every mismatch.

    A failed load leaves the model untouched.
    """
    state = read_state_dict(path)
    check_fits(model, state, path)
    model.load_state_dict(state, strict=True)


def check_fits(model: nn.Module, state: Mapping[str, torch.Tensor], path: str | Path) -> None:
    """Raise a WeightsError naming every key of `state` (read from `path`) that does not fit `model`."""
    problems = mismatch_report(model.state_dict(), state)
    if problems:
        raise WeightsError(f"weights in {path} do not fit the model: {'; '.join(problems)}")


__all__ = ["WeightsError", "check_fits", "extract_state_dict", "load_weights", "mismatch_report", "read_state_dict", "read_torch_file"]
