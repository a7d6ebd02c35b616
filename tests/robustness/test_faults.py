"""Faults during training: SIGKILL at exact and at random points, a full disk, a read-only disk.

After every fault the run directory holds a loadable checkpoint (once one epoch has finished)
and metrics consistent with it, and `archc train --resume` completes the run with exactly the
weights of an uninterrupted run: no run is lost. See harness.py for how the kills are placed.

The full and read-only disks are real where the test may mount file systems (root on Linux):
a 1 MB tmpfs that the run fills after its first epoch, and a bind mount remounted read-only
after its first epoch. Elsewhere the same faults are injected by patching the writes.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FORKSERVER, REPO, archc_here, campaign_size, clean_env
from tests.robustness import harness as h
from tests.robustness.conftest import note

pytestmark = [
    FORKSERVER,
    pytest.mark.skipif(
        not sys.platform.startswith("linux"), reason="forkserver children and /proc are Linux's"
    ),
]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """(run directory, wall seconds) of one uninterrupted run of tiny.yaml."""
    out = tmp_path_factory.mktemp("reference") / "run"
    assert (
        h.run(["--version"], out.parent / "warm-up.log")[0] == 0
    )  # start the forkserver outside the timing
    start = time.perf_counter()
    rc, output = h.run(h.train_argv(out, pages=True), out.parent / "log")  # the kill window
    seconds = time.perf_counter() - start
    assert rc == 0, output
    h.check_completed(out, None)
    return out, seconds


def resume_to_completion(out: Path, reference: Path, log: Path) -> dict[str, Any]:
    """`archc train --resume` in a fresh process; the run must
    complete exactly like the reference."""
    rc, output = h.run(h.train_argv(out, "--resume"), log)
    assert rc == 0, f"run lost: --resume failed\n{output}"
    assert "Traceback" not in output
    return h.check_completed(out, reference)


# --------------------------------------------------------------------------- kills at exact points

# The quick loop kills one run at one point (a checkpoint half written); `make test` at every point.
QUICK_POINT = "last.pt of epoch 2 half written"
POINTS = [
    pytest.param(
        p, id=p.name.replace(" ", "_"), marks=() if p.name == QUICK_POINT else pytest.mark.slow
    )
    for p in h.KILL_POINTS
]


@pytest.mark.parametrize("point", POINTS)
def test_sigkill_at_a_point_then_resume(
    point: h.KillPoint, reference: tuple[Path, float], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    rc, output = h.run(h.train_argv(out, pages=point.pages), tmp_path / "killed.log", point)
    assert rc == -signal.SIGKILL, f"the kill point never fired:\n{output}"
    epoch = h.check_interrupted(out)
    record = resume_to_completion(out, reference[0], tmp_path / "resume.log")
    if epoch:
        assert record["resumed_from_epoch"] == epoch
    note(f"kill point '{point.name}': checkpoint at epoch {epoch}, resumed and completed")


# --------------------------------------------------------------------------- kills at random times


def random_kills(
    count: int, seed: int, reference: tuple[Path, float], base: Path
) -> dict[str, int]:
    """SIGKILL runs at random moments; each run is resumed (and maybe
    killed again) until it completes.

    A kill lands anywhere: while the process starts, mid-epoch, inside a checkpoint or metrics
    write, after the last epoch. Every interrupted directory is checked, then resumed.
    """
    rng = random.Random(seed)
    window = reference[1] * 1.2
    stats = {"kills": 0, "completed_runs": 0, "checks": 0}
    run_no = 0
    out = base / f"run{run_no}"
    while stats["kills"] < count:
        child = h.start(h.train_argv(out, "--resume", pages=True), base / f"run{run_no}.log")
        time.sleep(rng.uniform(0, window))
        if child.process.is_alive():
            child.kill()
        rc = child.wait()
        if rc == -signal.SIGKILL:
            stats["kills"] += 1
            h.check_interrupted(out)
            stats["checks"] += 1
            continue
        assert rc == 0, child.output()
        h.check_completed(out, reference[0])
        stats["completed_runs"] += 1
        run_no += 1
        out = base / f"run{run_no}"
    resume_to_completion(out, reference[0], base / "final.log")
    stats["completed_runs"] += 1
    note(f"random kills (seed {seed}): {stats}")
    return stats


@pytest.mark.slow
def test_random_sigkills_never_lose_a_run(reference: tuple[Path, float], tmp_path: Path) -> None:
    stats = random_kills(6, seed=7, reference=reference, base=tmp_path)
    assert stats["kills"] == 6 and stats["completed_runs"] >= 1


@pytest.mark.slow
def test_many_random_sigkills_never_lose_a_run(
    reference: tuple[Path, float], tmp_path: Path
) -> None:
    seed = random.SystemRandom().randrange(2**32)
    kills = campaign_size(40, floor=10)
    stats = random_kills(kills, seed=seed, reference=reference, base=tmp_path)
    assert stats["kills"] == kills, seed


@pytest.mark.slow
def test_real_archc_train_process_killed_and_resumed(
    reference: tuple[Path, float], tmp_path: Path
) -> None:
    """The same with a `python -m archc train` process, as a user runs it, SIGKILLed at a random
    moment after its second epoch; the resume needs no process of its own (archc.cli.main here)."""
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "archc",
        "train",
        str(h.TINY),
        "--out",
        str(out),
        "--workers",
        "1",
        "--log",
        "plain",
        "--epochs",
        "30",
        "--no-pages",
    ]
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if line.startswith("epoch 2/30"):
                break
        time.sleep(random.uniform(0, 0.3))
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        proc.kill()
    epoch = h.check_interrupted(out, epochs=30)
    assert epoch >= 2
    result = archc_here(*cmd[3:], "--resume")
    assert result.returncode == 0, result.stderr
    record = h.check_completed(out, None, epochs=30)
    assert record["resumed_from_epoch"] == epoch
    note(f"real archc train process killed at epoch {epoch + 1} of 30, resumed and completed")


# ------------------------------------------------------------------------- full and read-only disks


def can_mount() -> bool:
    if os.geteuid() != 0 or not sys.platform.startswith("linux") or shutil.which("mount") is None:
        return False
    probe = Path(f"/tmp/archc-mount-probe-{os.getpid()}")
    probe.mkdir(exist_ok=True)
    try:
        ok = (
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)],
                capture_output=True,
                check=False,
            ).returncode
            == 0
        )
        if ok:
            subprocess.run(["umount", str(probe)], check=True)
        return ok
    finally:
        probe.rmdir()


MOUNTABLE = can_mount()
needs_mount = pytest.mark.skipif(
    not MOUNTABLE, reason="needs root and permission to mount (the patched variants run instead)"
)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MB tmpfs."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture
def bind_mount(tmp_path: Path) -> Iterator[Path]:
    """A writable bind mount of a scratch directory (to be remounted read-only by a test)."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    subprocess.run(["mount", "--bind", str(src), str(dst)], check=True)
    try:
        yield dst
    finally:
        subprocess.run(["umount", "-l", str(dst)], check=False)


@needs_mount
def test_disk_full_during_a_checkpoint_write(
    small_disk: Path, reference: tuple[Path, float], tmp_path: Path
) -> None:
    out, filler = small_disk / "run", small_disk / "filler"
    rc, output = h.run(h.train_argv(out), tmp_path / "full.log", after=(1, "fill", str(filler)))
    assert rc == 1, output
    assert (
        f"error: cannot write checkpoint {out / 'last.pt'}: No "
        "space left on device; the previous checkpoint is kept"
    ) in output
    assert "Traceback" not in output
    assert h.check_interrupted(out) == 1
    assert {p.name for p in out.iterdir()} == {
        "last.pt",
        "best.pt",
        "metrics.csv",
        "metrics.jsonl",
        "tensorboard",
    }  # no temp file, no lock
    filler.unlink()
    resume_to_completion(out, reference[0], tmp_path / "resume.log")


@needs_mount
def test_read_only_disk_during_a_run(
    bind_mount: Path, reference: tuple[Path, float], tmp_path: Path
) -> None:
    out = bind_mount / "run"
    rc, output = h.run(
        h.train_argv(out), tmp_path / "ro.log", after=(1, "readonly", str(bind_mount))
    )
    assert rc == 1, output
    assert (
        f"error: cannot write checkpoint {out / 'last.pt'}: "
        "Read-only file system; the previous checkpoint is kept"
    ) in output
    assert "Traceback" not in output
    assert (
        h.check_interrupted(out) == 1
    )  # the lock could not be removed either: a stale lock, taken over below
    subprocess.run(["mount", "-o", "remount,bind,rw", str(bind_mount)], check=True)
    resume_to_completion(out, reference[0], tmp_path / "resume.log")


@needs_mount
def test_read_only_output_directory_from_the_start(bind_mount: Path, tmp_path: Path) -> None:
    subprocess.run(["mount", "-o", "remount,bind,ro", str(bind_mount)], check=True)
    rc, output = h.run(h.train_argv(bind_mount / "run"), tmp_path / "ro.log")
    assert (
        rc == 1
        and f"error: cannot create output directory {bind_mount / 'run'}: Read-only file system"
        in output
    ), output
    assert "Traceback" not in output


# Where mounting is not allowed, the same faults are injected into the writes themselves.


def _failing_writes(
    monkeypatch: pytest.MonkeyPatch, target: str, code: int, after_epoch: int, where: str
) -> None:
    """From epoch `after_epoch + 1` on, writing `target` fails with errno `code` at
    `where` (write | fsync | open)."""
    from archc.trainer import checkpoint, loop, metrics

    state = {"armed": False}
    original_metrics = loop.write_metrics

    def write_metrics(out: Path, history: list[dict[str, Any]]) -> None:
        original_metrics(out, history)
        state["armed"] = state["armed"] or len(history) == after_epoch

    monkeypatch.setattr(loop, "write_metrics", write_metrics)

    def fail() -> None:
        raise OSError(code, os.strerror(code))

    if where == "write":
        original_save = checkpoint.torch.save

        def save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
            if state["armed"] and h._target_of(f.name) == target:
                f.write(b"PK\x03\x04partial")
                fail()
            original_save(obj, f, *args, **kwargs)

        monkeypatch.setattr(checkpoint.torch, "save", save)
    elif where == "fsync":
        original_fsync = os.fsync

        def fsync(fd: int) -> None:
            if state["armed"] and h._target_of(os.readlink(f"/proc/self/fd/{fd}")) == target:
                fail()
            original_fsync(fd)

        monkeypatch.setattr(os, "fsync", fsync)
    else:  # open: the directory refuses new files (a read-only or full directory)
        original_write_text = Path.write_text

        def write_text(self: Path, *args: Any, **kwargs: Any) -> int:
            if state["armed"] and h._target_of(self) == target:
                fail()
            return original_write_text(self, *args, **kwargs)

        monkeypatch.setattr(metrics.Path, "write_text", write_text)


PATCHED = [
    (
        "last.pt",
        errno.ENOSPC,
        "write",
        "cannot write checkpoint {out}/last.pt: No space "
        "left on device; the previous checkpoint is kept",
    ),
    (
        "last.pt",
        errno.ENOSPC,
        "fsync",
        "cannot write checkpoint {out}/last.pt: No space "
        "left on device; the previous checkpoint is kept",
    ),
    (
        "last.pt",
        errno.EROFS,
        "write",
        "cannot write checkpoint {out}/last.pt: Read-only "
        "file system; the previous checkpoint is kept",
    ),
    (
        "metrics.csv",
        errno.ENOSPC,
        "open",
        "cannot write {out}/metrics.csv: No space left on device",
    ),
]


@pytest.mark.parametrize(
    ("target", "code", "where", "message"),
    PATCHED,
    ids=[f"{t}-{errno.errorcode[c]}-{w}" for t, c, w, _ in PATCHED],
)
def test_patched_write_failures_keep_the_previous_checkpoint(
    target: str, code: int, where: str, message: str, reference: tuple[Path, float], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from archc.cli import main

    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        _failing_writes(patch, target, code, after_epoch=1, where=where)
        rc = main(h.train_argv(out, "--log", "quiet"))
    err = capsys.readouterr().err
    assert rc == 1 and f"error: {message.format(out=out)}" in err and "Traceback" not in err, err
    epoch = h.check_interrupted(out)
    assert epoch == (
        2 if target == "metrics.csv" else 1
    )  # a metrics failure comes after that epoch's checkpoint
    assert not [p for p in out.iterdir() if ".tmp-" in p.name or p.name == "archc.lock"]
    resume_to_completion(out, reference[0], tmp_path / "resume.log")
