"""Writing result files: atomically (never a torn file), with the usual read permissions.

archc.atomic writes through mkstemp, whose files are private (0600); tables, plots, pages and
manifests are meant to be shared, so they get 0644 like any file an editor saves.
"""

from __future__ import annotations

from pathlib import Path

from archc.atomic import atomic_write_bytes

MODE = 0o644


def write_file(path: Path, data: bytes | str) -> Path:
    """Replace path with data atomically and make it world-readable; returns path."""
    atomic_write_bytes(path, data.encode() if isinstance(data, str) else data)
    path.chmod(MODE)
    return path
