"""What the trainer needs to know about the thing it trains, whether a spec or a plain nn.Module.

The compiler is reached only here (archc.api.load / archc.api.build), keeping the trainer's
dependency on it to two calls and a few attributes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archc.train_config import TrainConfig
from archc.trainer.errors import DataError


@dataclass
class Source:
    """A spec (loaded, not yet built) or a ready module, with the metadata a run records."""

    name: str
    source_hash: str
    spec: Any = None  # archc.validate.LoadedSpec
    module: nn.Module | None = None
    spec_path: str | None = None
    spec_overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        if self.spec is not None:
            return tuple(self.spec.input_shape)
        graph = getattr(self.module, "archc_graph", None)
        return tuple(graph.input_shape) if graph is not None else None

    @property
    def train_defaults(self) -> TrainConfig | None:
        return self.spec.train if self.spec is not None else None

    def build(self) -> nn.Module:
        """The module to train: compiled from the spec (under the caller's seed), or the given one."""
        if self.module is not None:
            return self.module
        from archc.api import build

        return build(self.spec)


def resolve_source(spec_or_module: Any, spec_overrides: dict[str, Any] | None = None, plugins: tuple[str, ...] = ()) -> Source:
    """Load a spec path (or accept a loaded spec or an nn.Module) without building anything."""
    overrides = dict(spec_overrides or {})
    if isinstance(spec_or_module, nn.Module):
        if overrides:
            raise DataError("spec overrides (--set) need a spec, not an nn.Module")
        graph = getattr(spec_or_module, "archc_graph", None)
        name = graph.name if graph is not None else type(spec_or_module).__name__
        fingerprint = hashlib.sha256(repr(spec_or_module).encode()).hexdigest()
        return Source(name=name, source_hash=f"module:{fingerprint}", module=spec_or_module)
    if isinstance(spec_or_module, (str, Path)):
        from archc.validate import load

        spec = load(spec_or_module, overrides, tuple(plugins))
        return Source(spec.name, spec.source_hash, spec=spec, spec_path=str(spec_or_module), spec_overrides=overrides)
    if hasattr(spec_or_module, "input_shape") and hasattr(spec_or_module, "source_hash"):
        if overrides:
            from archc.validate import validate

            spec_or_module = validate(spec_or_module.document, {**spec_or_module.overrides, **overrides}, spec_or_module.plugins)
        spec = spec_or_module
        return Source(spec.name, spec.source_hash, spec=spec, spec_path=spec.path, spec_overrides=dict(spec.overrides))
    raise TypeError(f"train() takes a spec path, a loaded spec or an nn.Module, not {type(spec_or_module).__name__}")


def head_weights(model: nn.Module) -> list[float] | None:
    """Loss weights of the extra outputs a train-mode forward returns after the main one.

    A compiled spec returns (main, *heads) in `archc_heads` order when it has heads; for a plain
    module this is None and its extra outputs get TrainConfig.aux_weight each.
    """
    heads = getattr(model, "archc_heads", None)
    if heads is None:
        return None
    return [float(h.loss_weight) for h in heads]


def count_params(model: nn.Module) -> int:
    graph = getattr(model, "archc_graph", None)
    if graph is not None:
        return int(graph.total_params)
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int | None:
    """MACs of one eval-mode forward: the spec's static count, else torchinfo's measurement."""
    graph = getattr(model, "archc_graph", None)
    if graph is not None:
        return int(graph.total_macs)
    import torchinfo

    was_training = model.training
    try:
        stats = torchinfo.summary(model, input_size=(1, *input_shape), verbose=0, mode="eval", device=next(model.parameters()).device)
        return int(stats.total_mult_adds)
    except (RuntimeError, ValueError, TypeError, StopIteration):
        return None
    finally:
        model.train(was_training)


def check_fit(source: Source, model: nn.Module, sample: torch.Tensor, dataset: str, num_classes: int) -> None:
    """Refuse, before training, a model whose input or output does not match the dataset.

    sample is one normalised batch of the dataset as the model will see it.
    """
    actual = tuple(int(d) for d in sample.shape[1:])
    expected = source.input_shape
    if expected is not None and tuple(expected) != actual:
        raise DataError(f"{source.name} takes input {_fmt(expected)} but {dataset} gives {_fmt(actual)}; {_hint(expected, actual)}")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(sample)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{source.name} cannot take {dataset} images of shape {_fmt(actual)} ({first}); try --resize H[,W] or --set in_channels=C") from None
    finally:
        model.train(was_training)
    main = out[0] if isinstance(out, (tuple, list)) else out
    if not isinstance(main, torch.Tensor) or main.dim() != 2:
        shape = list(main.shape) if isinstance(main, torch.Tensor) else type(main).__name__
        raise DataError(f"{source.name} must output class scores (batch, classes); it gives {shape}")
    if main.shape[1] != num_classes:
        raise DataError(f"{source.name} outputs {main.shape[1]} classes but {dataset} has {num_classes}; use --set num_classes={num_classes}")


def _fmt(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


def _hint(expected: tuple[int, ...], actual: tuple[int, ...]) -> str:
    hints = []
    if len(expected) == 3 and expected[1:] != actual[1:]:
        h, w = expected[1:]
        hints.append(f"pass --resize {h}" if h == w else f"pass --resize {h},{w}")
    if expected[:1] != actual[:1]:
        hints.append(f"use --set in_channels={actual[0]} (if the spec has that parameter)")
    return " or ".join(hints) or "check the spec's input"
