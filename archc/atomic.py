"""Crash-safe file writes: write a temp file in the same directory, fsync, then rename over.

Temporary files are named `.NAME.tmp-TOKEN`, TOKEN being this process's `process_token()`. The
run lock records the token, so cleaning up after a killed run removes exactly its files.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

TEMP_MARK = ".tmp-"
_SECRET = secrets.token_hex(6)


def process_token() -> str:
    """A token unique to this process (a forked child gets its own): PID plus a random part."""
    return f"{os.getpid()}-{_SECRET}"


def temp_path(path: Path) -> Path:
    """Where `path`'s next version is written before the rename: `.NAME.tmp-TOKEN` beside it."""
    return path.with_name(f".{path.name}{TEMP_MARK}{process_token()}")


def remove_temps(directory: Path, token: object) -> None:
    """Delete the temporary files that the process with `token` left in `directory`."""
    if not isinstance(token, str) or not token or "/" in token or len(token) > 64:
        return
    suffix = TEMP_MARK + token
    try:
        names = [
            e.name
            for e in os.scandir(directory)
            if e.name.startswith(".") and e.name.endswith(suffix)
        ]
    except OSError:
        return
    for name in names:
        with contextlib.suppress(OSError):
            (directory / name).unlink()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that readers see the old or the new file, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    # 0o666 through the kernel's umask, like any new file (mkstemp's 0600 would surprise users
    # sharing results); O_EXCL never follows or reuses a file someone planted at that name
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
