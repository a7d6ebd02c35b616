"""ExperimentError: a bad sweep or comparison request, reported as
one line before anything trains."""

from __future__ import annotations

from archc.errors import ArchcError


class ExperimentError(ArchcError):
    """Bad grid, run directory or sweep state; the CLI prints it as `error: ...` and exits 1."""
