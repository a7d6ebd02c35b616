"""archc: a declarative architecture-spec compiler for PyTorch."""

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

from archc.api import Analysis, analyze, build, compile_graph, load, summary
from archc.errors import ArchcError, SpecError

if TYPE_CHECKING:
    from archc.compiler.validate import LoadedSpec
    from archc.inference import Prediction
    from archc.trainer.api import TrainResult


def load_model(path: Any, *, plugins: tuple[str, ...] = ()) -> Any:
    """Rebuild a model saved by `archc build --save FILE` (spec and weights), in eval mode."""
    from archc.saved import load_model as rebuild

    return rebuild(path, plugins=plugins)


def train(spec_or_module: Any, **config: Any) -> "TrainResult":
    """Train a spec (path or loaded) or an nn.Module with the common trainer (archc.trainer).

    Returns the result record (a dict, as OUT/result.json) with `.model` and `.history`."""
    from archc.trainer.api import train as run

    return run(spec_or_module, **config)


def predict(spec: Any, images: Any, **options: Any) -> "list[Prediction]":
    """Top-k classes of images from a training checkpoint or
    torchvision's weights (archc.predict)."""
    from archc.inference import predict as run

    return run(spec, images, **options)


__all__ = ["Analysis", "ArchcError", "LoadedSpec", "SpecError", "analyze", "build", "compile_graph", "load", "load_model",
           "predict", "summary", "train"]
