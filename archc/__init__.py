"""archc: a declarative architecture-spec compiler for PyTorch."""

__version__ = "0.1.0"
