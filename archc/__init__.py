"""archc: a declarative architecture-spec compiler for PyTorch."""

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

from archc.api import Analysis, analyze, build, compile_graph, load, summary
from archc.errors import ArchcError, SpecError

if TYPE_CHECKING:
    from pathlib import Path

    from archc.compiler.emit import CompiledModel
    from archc.compiler.validate import LoadedSpec
    from archc.inference import Prediction
    from archc.trainer.api import TrainResult
    from archc.trainer.model import SpecOrModule


def load_model(path: "str | Path", *, plugins: tuple[str, ...] = ()) -> "CompiledModel":
    """Rebuild a model saved by `archc build --save FILE` (spec and weights), in eval mode."""
    from archc.saved import load_model as rebuild

    return rebuild(path, plugins=plugins)


def train(spec_or_module: "SpecOrModule", **config: Any) -> "TrainResult":
    """Train a spec (path or loaded) or an nn.Module with the common trainer (archc.trainer).

    Returns the result record (a dict, as OUT/result.json) with `.model` and `.history`."""
    from archc.trainer.api import train as run

    return run(spec_or_module, **config)


def predict(
    spec: "str | Path | None", images: "str | Path | list[str | Path]", **options: Any
) -> "list[Prediction]":
    """Top-k classes of images from a training checkpoint or
    torchvision's weights (archc.predict)."""
    from archc.inference import predict as run

    return run(spec, images, **options)


__all__ = [
    "Analysis",
    "ArchcError",
    "LoadedSpec",
    "SpecError",
    "analyze",
    "build",
    "compile_graph",
    "load",
    "load_model",
    "predict",
    "summary",
    "train",
]
