"""`--init-from PATH`: load a saved state_dict (e.g. torchvision's pretrained weights) into a compiled model.

The parity specs name their layers like torchvision, so `torch.save(torchvision_model.state_dict(), p)`
loads strictly. Anything that does not fit is reported in full (missing, unexpected and mis-shaped
keys, with counts) instead of PyTorch's wall of text, so the user can see which layers to fix.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archc.errors import SpecError

# Dicts that wrap a state_dict: `archc build --save` ("state_dict"), trainer checkpoints ("model").
WRAPPER_KEYS = ("state_dict", "model")
# Prefixes added by DistributedDataParallel and torch.compile; stripped when every key has one.
MODULE_PREFIXES = ("module.", "_orig_mod.")
SHOWN = 10  # keys listed per kind of mismatch


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors saved at `path`: a raw state_dict, or one under "state_dict" or "model"."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"--init-from: no such file: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt file can fail anywhere inside the unpickler
        if isinstance(exc, pickle.UnpicklingError) and "weights only" in str(exc).lower():
            raise SpecError(f"--init-from: refusing to load {path}: it holds Python objects, not just tensors "
                            "(read with weights_only=True)") from None
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SpecError(f"--init-from: {path} is not a readable PyTorch file ({first})") from None
    if isinstance(obj, Mapping) and not _is_state_dict(obj):
        for key in WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and _is_state_dict(inner):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not _is_state_dict(obj):
        raise SpecError(f"--init-from: {path} holds no state_dict (expected a mapping of names to tensors, "
                        f"or one under {' or '.join(repr(k) for k in WRAPPER_KEYS)})")
    state = dict(obj)
    for prefix in MODULE_PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _is_state_dict(obj: Mapping[Any, Any]) -> bool:
    return bool(obj) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def mismatch_report(own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]) -> list[str]:
    """One line per kind of problem (missing, unexpected, shape), each with its count; empty if it fits."""
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} (file {list(state[k].shape)}, model {list(own[k].shape)})"
              for k in own if k in state and state[k].shape != own[k].shape]
    lines = []
    for label, keys in (("missing from the file", missing), ("unexpected in the file", unexpected),
                        ("with a different shape", shapes)):
        if keys:
            more = f", and {len(keys) - SHOWN} more" if len(keys) > SHOWN else ""
            lines.append(f"{len(keys)} {'key' if len(keys) == 1 else 'keys'} {label}: {', '.join(keys[:SHOWN])}{more}")
    return lines


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load the state_dict at `path` into `model` strictly, or raise a SpecError naming every mismatch."""
    state = read_state_dict(path)
    problems = mismatch_report(model.state_dict(), state)
    if problems:
        raise SpecError(f"--init-from: the weights in {path} do not fit the model:\n  " + "\n  ".join(problems))
    model.load_state_dict(state, strict=True)


__all__ = ["load_weights", "mismatch_report", "read_state_dict"]
