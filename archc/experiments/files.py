"""Writing result files atomically (never a torn file), from text or bytes."""

from __future__ import annotations

from pathlib import Path

from archc.atomic import atomic_write_bytes


def write_file(path: Path, data: bytes | str) -> Path:
    """Replace path with data atomically; returns path."""
    atomic_write_bytes(path, data.encode() if isinstance(data, str) else data)
    return path
