"""The trainer's exceptions: each carries a one-line message the CLI prints as `error: ...`."""

from __future__ import annotations

from archc.errors import ArchcError


class TrainError(ArchcError):
    """Bad input or an unusable environment for training; never a bug in archc."""


class DataError(TrainError):
    """A dataset that cannot be found, read or fed to the model."""


class CheckpointError(TrainError):
    """A checkpoint or weights file that cannot be written, read or applied."""


class LockError(TrainError):
    """Another run holds the output directory."""


class DivergenceError(TrainError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""
