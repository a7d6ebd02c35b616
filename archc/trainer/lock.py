"""The run-directory lock: two trainers writing the same OUT would corrupt each other's checkpoints.

The lock is a file created with O_EXCL that records the owner's PID, its start time and host. It
is stale, and taken over, when that PID no longer runs on this host or now belongs to a process
started at another time (PID reuse); a lock from another host is never judged stale.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from archc.trainer.errors import LockError, TrainError

LOCK_NAME = "archc.lock"
FRESH_S = 5.0  # an unreadable lock younger than this may still be being written by its creator


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of pid (clock ticks since boot, from /proc), or None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses; fields after its ')' are fixed.
    return stat.rsplit(")", 1)[1].split()[19]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """Context manager holding OUT/archc.lock for the duration of a run."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_NAME
        self.held = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TrainError(f"cannot create output directory {self.path.parent}: {exc.strerror or exc}") from None
        record = json.dumps(
            {"pid": os.getpid(), "start": process_start_time(os.getpid()), "host": socket.gethostname(), "created": time.time()}
        )
        # An empty lock is judged stale only after FRESH_S (its writer may be mid-write), so keep
        # trying a little longer than that: a run killed while creating its lock can be resumed at once.
        deadline = time.monotonic() + FRESH_S + 2
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if time.monotonic() > deadline:
                    break
                self._take_over_if_stale()
                continue
            except OSError as exc:
                raise TrainError(f"cannot write to output directory {self.path.parent}: {exc.strerror or exc}") from None
            with os.fdopen(fd, "w") as f:
                f.write(record)
            self.held = True
            return
        raise LockError(f"could not take the lock {self.path}; another run keeps creating it")

    def _take_over_if_stale(self) -> None:
        """Remove the existing lock if its owner is gone; otherwise refuse with the owner's PID."""
        try:
            before = os.stat(self.path)
            owner = json.loads(self.path.read_text() or "{}")
        except FileNotFoundError:
            return
        except (OSError, ValueError):
            owner = {}
        pid, host, start = owner.get("pid"), owner.get("host"), owner.get("start")
        if not isinstance(pid, int):
            if time.time() - before.st_mtime < FRESH_S:  # being written right now by its creator
                time.sleep(0.2)
                return
            stale = True  # unreadable and not fresh: a lock whose writer died mid-write
        elif host != socket.gethostname():
            raise LockError(
                f"{self.path.parent} is in use by pid {pid} on host {host}; if that run is gone, delete {self.path}"
            )
        else:
            stale = not pid_alive(pid) or (start is not None and process_start_time(pid) not in (None, start))
        if not stale:
            raise LockError(
                f"{self.path.parent} is in use by another archc train (pid {pid}); wait for it, stop it, or choose another --out "
                f"(lock file {self.path})"
            )
        try:
            if os.stat(self.path).st_ino == before.st_ino:  # still the stale file we judged, not a new lock
                self.path.unlink()
        except FileNotFoundError:
            pass

    def release(self) -> None:
        if self.held:
            self.held = False
            # a directory gone read-only keeps the lock: stale once this process exits, then taken over
            with contextlib.suppress(OSError):
                self.path.unlink(missing_ok=True)
