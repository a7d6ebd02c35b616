"""Two trainers, one output directory: the second refuses (naming the lock and the owner's PID)
and writes nothing; a lock left by a dead process is taken over."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from archc.cli import main
from archc.trainer.errors import LockError
from archc.trainer.lock import LOCK_NAME
from tests.conftest import FORKSERVER
from tests.robustness import harness as h

pytestmark = [
    FORKSERVER,
    pytest.mark.skipif(
        not sys.platform.startswith("linux"), reason="forkserver children and /proc are Linux's"
    ),
]


def _snapshot(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()}


def _wait_for(path: Path, child: h.Child, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert child.process.is_alive(), child.output()
        assert time.monotonic() < deadline, f"{path} never appeared:\n{child.output()}"
        time.sleep(0.05)


def test_second_train_on_the_same_out_refuses_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, release = tmp_path / "run", tmp_path / "release"
    first = h.start(h.train_argv(out), tmp_path / "first.log", hold=release)
    try:
        _wait_for(
            tmp_path / "run.holding", first
        )  # epoch 1 is on disk and the first run holds the lock
        before = _snapshot(out)
        assert json.loads(before[LOCK_NAME])["pid"] == first.pid
        expected = (f"error: {out} is in use by another archc train (pid {first.pid}); wait "
                    "for it, stop it, or choose another --out "
                    f"(lock file {out / LOCK_NAME})")  # fmt: skip

        # a second `archc train` process, as a user would start it (a child of the harness's
        # forkserver, which has imported torch once, runs archc.cli.main as `archc train` does)
        rc, output = h.run(["train", str(h.TINY), "--out", str(out)], tmp_path / "second.log")
        assert rc == 1 and expected in output and "Traceback" not in output, output
        # --resume does not get past the lock either
        assert main(h.train_argv(out, "--resume", "--log", "quiet")) == 1
        assert expected in capsys.readouterr().err
        assert _snapshot(out) == before, "the refused run touched the directory"
    finally:
        release.touch()
    assert first.wait() == 0, first.output()
    h.check_completed(out, None)


def test_a_dead_owners_lock_is_taken_over(tmp_path: Path) -> None:
    out = tmp_path / "run"
    killed = h.start(
        h.train_argv(out), tmp_path / "killed.log", h.KillPoint("step 12", "step", nth=12)
    )
    assert killed.wait() == -signal.SIGKILL
    lock = json.loads((out / LOCK_NAME).read_text())
    assert lock["pid"] == killed.pid  # the lock outlived its owner
    rc, output = h.run(h.train_argv(out, "--resume"), tmp_path / "resume.log")
    assert rc == 0, output
    h.check_completed(out, None)


def test_an_empty_lock_from_a_writer_killed_mid_write_is_taken_over(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_NAME).write_text("")
    old = time.time() - 60
    os.utime(out / LOCK_NAME, (old, old))
    rc, output = h.run(h.train_argv(out), tmp_path / "run.log")
    assert rc == 0, output
    h.check_completed(out, None)


def test_a_live_owner_is_never_overridden(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Whoever holds the kernel's lock on the file keeps it, whatever the file says."""
    import fcntl

    out = tmp_path / "run"
    out.mkdir()
    with open(out / LOCK_NAME, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
        held.flush()
        assert main(h.train_argv(out, "--log", "quiet")) == 1
        err = capsys.readouterr().err
        assert (
            f"in use by another archc train (pid {os.getpid()})" in err
            and str(out / LOCK_NAME) in err
        )
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]


@pytest.mark.parametrize(
    "content",
    [
        '{"pid": 99999999999999999999}',
        '{"pid": -1, "host": "' + "h" * 5000 + '"}',
        "[1, 2]",
        "x" * 100_000,
        "\x00\xff",
    ],
)
def test_a_garbled_lock_left_by_nobody_is_taken_over(tmp_path: Path, content: str) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_NAME).write_text(content)
    rc, output = h.run(h.train_argv(out, "--epochs", "1"), tmp_path / "run.log")
    assert rc == 0, output


def test_a_garbled_lock_of_a_live_owner_gives_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import fcntl

    out = tmp_path / "run"
    out.mkdir()
    with open(out / LOCK_NAME, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write('{"pid": 99999999999999999999}')
        held.flush()
        assert main(h.train_argv(out, "--log", "quiet")) == 1
    err = capsys.readouterr().err
    assert "in use by another archc train (another process)" in err and "Traceback" not in err


@pytest.mark.parametrize("kind", ["directory", "symlink", "hardlink"])
def test_a_lock_path_that_is_not_a_plain_file_is_one_line(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    if kind == "directory":
        (out / LOCK_NAME).mkdir()
    elif kind == "symlink":
        (out / LOCK_NAME).symlink_to(victim)
    else:
        os.link(victim, out / LOCK_NAME)
    assert main(h.train_argv(out, "--log", "quiet")) == 1
    err = capsys.readouterr().err
    assert f"cannot use {out / LOCK_NAME} as the run lock" in err and "Traceback" not in err, err
    assert victim.read_text() == "keep me"


def test_stale_temp_cleanup_removes_only_what_a_killed_run_left(tmp_path: Path) -> None:
    out = tmp_path / "run"
    killed = h.start(
        h.train_argv(out),
        tmp_path / "killed.log",
        h.KillPoint("last.pt half written", "save_mid", "last.pt", 2),
    )
    assert killed.wait() == -signal.SIGKILL
    left = [p.name for p in out.iterdir() if ".tmp-" in p.name]
    assert left, "the kill point should leave a temporary file"
    lookalikes = [".last.pt.tmp-1", ".notes.tmp-x", ".metrics.csv.tmp-42"]
    for name in lookalikes:
        (out / name).write_text("a user's file")
    rc, output = h.run(h.train_argv(out, "--resume"), tmp_path / "resume.log")
    assert rc == 0, output
    remaining = sorted(p.name for p in out.iterdir() if ".tmp-" in p.name)
    assert remaining == sorted(lookalikes)


def test_the_lock_dies_with_its_holder_while_a_forked_child_lives_on(tmp_path: Path) -> None:
    """A trainer's forked children (DataLoader workers) do not hold its lock: SIGKILL the holder
    and the directory is free at once, though the child it forked still runs."""
    from archc.trainer.lock import RunLock

    ready_r, ready_w = os.pipe()
    holder = os.fork()
    if holder == 0:  # the trainer: take the lock, fork a long-lived worker, report, wait
        try:
            RunLock(tmp_path).acquire()
            worker = os.fork()
            if worker == 0:
                time.sleep(60)
                os._exit(0)
            os.write(ready_w, str(worker).encode())
            time.sleep(60)
        finally:
            os._exit(1)
    os.close(ready_w)
    worker = int(os.read(ready_r, 32) or b"0")
    os.close(ready_r)
    try:
        assert worker > 0
        with pytest.raises(LockError, match="in use by another archc train"):
            RunLock(tmp_path).acquire()  # the holder is alive: refused
        os.kill(holder, signal.SIGKILL)
        os.waitpid(holder, 0)
        os.kill(worker, 0)  # the worker is still running
        lock = RunLock(tmp_path)
        lock.acquire()  # free at once
        lock.release()
    finally:
        for pid in (holder, worker):
            with contextlib.suppress(ProcessLookupError, ChildProcessError, ValueError):
                os.kill(pid, signal.SIGKILL)
