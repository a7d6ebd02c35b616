"""What the trainer needs to know about the thing it trains, whether a spec or a plain nn.Module.

The compiler is reached only here (archc.api.load / archc.api.build), keeping the trainer's
dependency on it to two calls and a few attributes. Resolving a spec needs no torch: `--nproc`'s
launcher resolves one and starts torchrun without importing it.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archc.compiler.train_config import TrainConfig
from archc.trainer.errors import DataError
from archc.trainer.fit import hint

if TYPE_CHECKING:
    import torch
    from torch import nn
    from typing_extensions import TypeIs

    from archc.compiler.validate import LoadedSpec

    SpecOrModule = str | Path | LoadedSpec | nn.Module  # what archc.train trains


@dataclass
class Source:
    """A spec (loaded, not yet built) or a ready module, with the metadata a run records."""

    name: str
    source_hash: str
    spec: LoadedSpec | None = None
    module: nn.Module | None = None
    spec_path: str | None = None
    spec_overrides: dict[str, Any] = field(default_factory=dict)
    input_override: tuple[int, ...] | None = None  # --input, recorded with the run
    plugins: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        """What a checkpoint records to rebuild exactly this model without the command line
        (`archc evaluate` and `archc predict`): the spec's text, --set, --input and plugins."""
        info: dict[str, Any] = {"name": self.name, "hash": self.source_hash}
        if self.spec is not None:
            overrides = json.loads(json.dumps(self.spec_overrides, default=str))
            info |= {
                "path": self.spec_path,
                "overrides": overrides,
                "plugins": list(self.plugins),
                "input_shape": list(self.input_override) if self.input_override else None,
                "text": self.spec.document.source.text,
            }
        return info

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
        """The module to train: compiled from the spec (under the
        caller's seed), or the given one."""
        if self.module is not None:
            return self.module
        from archc.api import build

        assert self.spec is not None  # a Source holds a module or a spec
        return build(self.spec)


def resolve_source(
    spec_or_module: SpecOrModule,
    spec_overrides: dict[str, Any] | None = None,
    plugins: tuple[str, ...] = (),
    input_shape: tuple[int, ...] | list[int] | None = None,
) -> Source:
    """Load a spec path (or accept a loaded spec or an nn.Module) without building anything.

    input_shape is `--input`: the spec compiled for another input (same rank), e.g. 1,28,28.
    """
    overrides = dict(spec_overrides or {})
    shape = tuple(int(d) for d in input_shape) if input_shape is not None else None
    if _is_module(spec_or_module):
        if overrides or shape:
            raise DataError("spec overrides (--set, --input) need a spec, not an nn.Module")
        graph = getattr(spec_or_module, "archc_graph", None)
        name = graph.name if graph is not None else type(spec_or_module).__name__
        fingerprint = hashlib.sha256(repr(spec_or_module).encode()).hexdigest()
        return Source(name=name, source_hash=f"module:{fingerprint}", module=spec_or_module)
    if isinstance(spec_or_module, (str, Path)):
        from archc.compiler.validate import load

        spec = load(spec_or_module, overrides, tuple(plugins))
        return _spec_source(spec, str(spec_or_module), shape)
    if hasattr(spec_or_module, "input_shape") and hasattr(spec_or_module, "source_hash"):
        if overrides:
            from archc.compiler.validate import validate

            spec_or_module = validate(
                spec_or_module.document,
                {**spec_or_module.overrides, **overrides},
                spec_or_module.plugins,
            )
        return _spec_source(spec_or_module, spec_or_module.path, shape)
    raise TypeError(
        "train() takes a spec path, a loaded spec or an "
        f"nn.Module, not {type(spec_or_module).__name__}"
    )


def _is_module(value: object) -> TypeIs[nn.Module]:
    """Whether value is an nn.Module, without importing torch: none exists before torch is."""
    loaded = sys.modules.get("torch")
    return loaded is not None and isinstance(value, loaded.nn.Module)


def checkpoint_source(
    spec: SpecOrModule | None,
    stored: object,
    checkpoint: str | Path,
    spec_overrides: dict[str, Any] | None = None,
    plugins: tuple[str, ...] = (),
    input_shape: tuple[int, ...] | list[int] | None = None,
) -> Source:
    """The model a checkpoint was trained as: the `--set` and `--input` it recorded (flags given
    again override them), compiled from `spec` or, when spec is None, from the spec text the
    checkpoint carries. Plugins are code, so they are never imported because a file names them."""
    from archc.trainer.errors import CheckpointError

    recorded = stored.get("spec") if isinstance(stored, dict) else None
    info: dict[str, Any] = recorded if isinstance(recorded, dict) else {}
    overrides = {**(info.get("overrides") or {}), **(spec_overrides or {})}
    shape = input_shape if input_shape is not None else info.get("input_shape")
    missing = [p for p in info.get("plugins") or [] if p not in plugins]
    if missing:
        raise CheckpointError(
            f"{checkpoint} was trained with --plugin "
            f"{' --plugin '.join(missing)}; pass it again to load the model"
        )
    if spec is not None:
        return resolve_source(spec, overrides, plugins, shape)
    text = info.get("text")
    if not isinstance(text, str):
        raise CheckpointError(
            f"{checkpoint} does not carry its spec (a plain "
            "state_dict or an older checkpoint): give the spec file"
        )
    from archc.compiler.validate import load

    source = resolve_source(load(text, overrides, plugins), None, plugins, shape)
    source.spec_path = info.get("path")
    return source


def _spec_source(spec: LoadedSpec, path: str, input_shape: tuple[int, ...] | None) -> Source:
    from archc.api import fingerprint, with_input

    spec = with_input(spec, input_shape)
    return Source(
        spec.name,
        fingerprint(spec, input_shape),
        spec=spec,
        spec_path=path,
        spec_overrides=dict(spec.overrides),
        input_override=input_shape,
        plugins=tuple(spec.plugins),
    )


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
        stats = torchinfo.summary(
            model,
            input_size=(1, *input_shape),
            verbose=0,
            mode="eval",
            device=next(model.parameters()).device,
        )
        return int(stats.total_mult_adds)
    except (RuntimeError, ValueError, TypeError, StopIteration):
        return None
    finally:
        model.train(was_training)


def check_fit(
    source: Source, model: nn.Module, sample: torch.Tensor, dataset: str, num_classes: int
) -> None:
    """Refuse, before training, a model whose input or output does not match the dataset.

    sample is one normalised batch of the dataset as the model will see it.
    """
    import torch

    actual = tuple(int(d) for d in sample.shape[1:])
    expected = source.input_shape
    if expected is not None and tuple(expected) != actual:
        advice = hint(source.spec, actual) if source.spec is not None else "check the model's input"
        raise DataError(
            f"{source.name} takes input {_fmt(expected)} "
            f"but {dataset} gives {_fmt(actual)}; {advice}"
        )
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(sample)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        advice = (
            hint(source.spec, actual)
            if source.spec is not None
            else f"make the module take {_fmt(actual)} or pass --resize H[,W]"
        )
        raise DataError(
            f"{source.name} cannot take {dataset} images "
            f"of shape {_fmt(actual)} ({first}); {advice}"
        ) from None
    finally:
        model.train(was_training)
    main = out[0] if isinstance(out, (tuple, list)) else out
    if not isinstance(main, torch.Tensor) or main.dim() != 2:
        shape = list(main.shape) if isinstance(main, torch.Tensor) else type(main).__name__
        raise DataError(
            f"{source.name} must output class scores (batch, classes); it gives {shape}"
        )
    if main.shape[1] != num_classes:
        raise DataError(
            f"{source.name} outputs {main.shape[1]} classes but {dataset} "
            f"has {num_classes}; use --set num_classes={num_classes}"
        )


def _fmt(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)
