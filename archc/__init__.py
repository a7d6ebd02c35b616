"""archc: a declarative architecture-spec compiler for PyTorch."""

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

from archc.api import Analysis, analyze, build, compile_graph, load
from archc.errors import SpecError

if TYPE_CHECKING:
    from archc.validate import LoadedSpec


def train(spec_or_module: Any, **config: Any) -> dict[str, Any]:
    """Train a spec (path or loaded) or an nn.Module with the common trainer (archc.trainer)."""
    from archc.trainer.api import train as run

    return run(spec_or_module, **config)

__all__ = ["Analysis", "LoadedSpec", "SpecError", "analyze", "build", "compile_graph", "load", "train"]
