"""The run lock: one trainer per output directory; a lock nobody holds is taken over."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from archc.trainer import lock
from archc.trainer.errors import LockError, TrainError
from archc.trainer.lock import LOCK_NAME, RunLock


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_lock(directory: Path, **fields: object) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_NAME
    path.write_text(json.dumps({"host": socket.gethostname(), "start": None, **fields}))
    return path


def test_second_lock_on_the_same_directory_refuses(tmp_path: Path) -> None:
    with (
        RunLock(tmp_path),
        pytest.raises(LockError, match=rf"in use by another archc train \(pid {os.getpid()}\)"),
    ):
        RunLock(tmp_path).acquire()
    assert not (tmp_path / LOCK_NAME).exists()


def test_lock_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    _write_lock(tmp_path, pid=_dead_pid())
    with RunLock(tmp_path):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()


def test_read_only_directory_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> int:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(
        lock.os, "open", refuse
    )  # root ignores chmod, so simulate what the kernel says
    with pytest.raises(
        TrainError, match=f"cannot write to output directory {tmp_path}: Permission denied"
    ):
        RunLock(tmp_path).acquire()
    monkeypatch.undo()
    (tmp_path / "file").write_text("")
    with pytest.raises(TrainError, match=r"cannot create output directory .*file"):
        RunLock(tmp_path / "file").acquire()
