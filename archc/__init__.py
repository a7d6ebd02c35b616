"""archc: a declarative architecture-spec compiler for PyTorch."""

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

from archc.api import Analysis, analyze, build, compile_graph, load
from archc.errors import SpecError

if TYPE_CHECKING:
    from archc.validate import LoadedSpec


def train(spec_or_module: Any, **config: Any) -> dict[str, Any]:
    """Train a spec (path, LoadedSpec) or an nn.Module with the common trainer; returns the result record."""
    from archc.trainer.api import train as _train

    return _train(spec_or_module, **config)


__all__ = ["Analysis", "LoadedSpec", "SpecError", "analyze", "build", "compile_graph", "load", "train"]
