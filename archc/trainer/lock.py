"""The run-directory lock: two trainers writing the same OUT would corrupt each other's checkpoints.

The lock is the kernel's: an exclusive `flock` on OUT/archc.lock, held while the run lasts and
released by the kernel when the process ends however it ends (kill -9 included), so there is no
staleness to guess from PIDs or start times. The file's content is only information: the
holder's PID and host for the error message, and its temp-file token (archc.atomic) so that the
next run removes exactly the temporary files a killed run left, never a user's file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import stat
import time
from pathlib import Path
from types import TracebackType

from archc.atomic import process_token
from archc.trainer.errors import LockError, TrainError

LOCK_NAME = "archc.lock"

# A forked child (a DataLoader worker) inherits the held descriptor, and the kernel releases a
# flock only when its last descriptor closes: workers outliving a killed trainer would keep the
# directory locked until their watchdog ends them, and an immediate --resume would be refused.
# Every fork closes the held descriptors in the child, so the lock lives and dies with the trainer.
_HELD: set[int] = set()


def _close_held_in_child() -> None:
    for fd in _HELD:
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_close_held_in_child)
MAX_RECORD = (
    4096  # bytes of the lock file read for the message; a planted huge file is not read whole
)


class RunLock:
    """Context manager holding OUT/archc.lock for the duration of a run."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_NAME
        self.fd: int | None = None
        self.owner = 0  # the pid that acquired: a fork's copy of this object never releases
        self.previous: dict[
            str, object
        ] = {}  # what the last holder wrote: its token names its temp files

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    @property
    def held(self) -> bool:
        return self.fd is not None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TrainError(
                f"cannot create output directory {self.path.parent}: {exc.strerror or exc}"
            ) from None
        while True:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                owner = _read_record(fd)
                os.close(fd)
                if exc.errno in (errno.EAGAIN, errno.EACCES):
                    raise LockError(self._busy_message(owner)) from None
                raise TrainError(f"cannot lock {self.path}: {exc.strerror or exc}") from None
            # The previous holder may have removed the file between our open and our lock: then we
            # locked an orphan inode, and must lock the file now at the path instead.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path, follow_symlinks=False).st_ino
            except OSError:
                same = False
            if same:
                break
            os.close(fd)
        info = os.fstat(fd)
        if (
            not stat.S_ISREG(info.st_mode) or info.st_nlink != 1
        ):  # never truncate a planted link to another file
            os.close(fd)
            raise TrainError(
                f"cannot use {self.path} as the run lock: it is not a plain file of its own"
            )
        self.fd, self.owner = fd, os.getpid()
        _HELD.add(fd)
        self.previous = _read_record(fd)
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "token": process_token(),
            "created": time.time(),
        }
        try:
            # written through a short-lived descriptor: the held one is
            # read-only, so a remount read-only works
            writer = os.open(self.path, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                os.write(writer, json.dumps(record).encode())
            finally:
                os.close(writer)
        except OSError as exc:
            self.release()
            raise TrainError(
                f"cannot write to output directory {self.path.parent}: {exc.strerror or exc}"
            ) from None

    def _open(self) -> int:
        try:
            return os.open(
                self.path, os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644
            )
        except IsADirectoryError:
            raise TrainError(f"cannot use {self.path} as the run lock: it is a directory") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise TrainError(
                    f"cannot use {self.path} as the run lock: it is a symbolic link"
                ) from None
            raise TrainError(
                f"cannot write to output directory {self.path.parent}: {exc.strerror or exc}"
            ) from None

    def _busy_message(self, owner: dict[str, object]) -> str:
        pid, host = owner.get("pid"), owner.get("host")
        who = f"pid {pid}" if isinstance(pid, int) and 0 < pid < 2**31 else "another process"
        if isinstance(host, str) and host != socket.gethostname() and len(host) <= 255:
            who += f" on host {host}"
        return (
            f"{self.path.parent} is in use by another archc train ({who}); wait "
            f"for it, stop it, or choose another --out (lock file {self.path})"
        )

    def release(self) -> None:
        if self.fd is None or self.owner != os.getpid():
            return
        fd, self.fd = self.fd, None
        _HELD.discard(fd)
        # Remove the file while still holding the lock (a waiter that opened it re-checks the
        # inode); a directory gone read-only keeps it, which is harmless:
        # only the kernel's lock counts.
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(fd)


def _read_record(fd: int) -> dict[str, object]:
    """The JSON a holder wrote, or {} for an empty, huge or garbled file (never an error)."""
    try:
        data = os.pread(fd, MAX_RECORD + 1, 0)
        record = json.loads(data) if 0 < len(data) <= MAX_RECORD else {}
    except (OSError, ValueError, RecursionError):
        return {}
    return record if isinstance(record, dict) else {}
