"""Run `archc train` in child processes that can be SIGKILLed at exact points, and check run dirs.

Children come from a forkserver that has already imported torch and the trainer, so each run
starts in a fraction of a second instead of paying the torch import again. A child runs
`archc.cli.main(argv)` exactly as `archc train` does, with stdout and stderr sent to a file.

A kill point names a hook and a count: "the 2nd os.replace onto last.pt, before it happens"
and so on. The hook sends SIGKILL to its own process at that moment, so the kill lands inside
the write window deterministically rather than by luck of timing.
"""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SPECS = Path(__file__).resolve().parent / "specs"
TINY = SPECS / "tiny.yaml"
EPOCHS = 3  # tiny.yaml's train.epochs
STEPS = 8  # 256 images / batch 32
RUN_FILES = {
    "last.pt",
    "best.pt",
    "metrics.csv",
    "metrics.jsonl",
    "result.json",
    "archc.lock",
    "tensorboard",
    "diagram.svg",
    "report.md",
    "report.html",
}  # the last four: TensorBoard log, `archc train`'s pages


@dataclass(frozen=True)
class KillPoint:
    """SIGKILL the trainer at the `nth` time `hook` fires for
    `target` (a file name, or '' for any)."""

    name: str
    hook: str  # step | save_mid | fsync | replace_before | replace_after | lock_write
    target: str = ""
    nth: int = 1
    pages: bool = False  # the run writes its pages (`archc train` does unless --no-pages)


KILL_POINTS = [
    KillPoint("lock file created, not yet written", "lock_write"),
    KillPoint("epoch 1, step 3 (no checkpoint yet)", "step", nth=3),
    KillPoint("epoch 2, step 4", "step", nth=STEPS + 4),
    KillPoint("last.pt of epoch 1 half written", "save_mid", "last.pt", 1),
    KillPoint("last.pt of epoch 2 half written", "save_mid", "last.pt", 2),
    KillPoint("last.pt of epoch 2 written, before fsync", "fsync", "last.pt", 2),
    KillPoint("last.pt of epoch 2 synced, before the rename", "replace_before", "last.pt", 2),
    KillPoint("last.pt of epoch 2 renamed, metrics not yet", "replace_after", "last.pt", 2),
    KillPoint("best.pt of epoch 1 linked, before its rename", "replace_before", "best.pt", 1),
    KillPoint("metrics.csv of epoch 2 before its rename", "replace_before", "metrics.csv", 2),
    KillPoint(
        "between metrics.csv and metrics.jsonl of epoch 2", "replace_after", "metrics.csv", 2
    ),
    KillPoint("last epoch's checkpoint renamed", "replace_after", "last.pt", EPOCHS),
    KillPoint("before result.json", "replace_before", "result.json", 1),
    KillPoint("result.json written, lock not yet released", "replace_after", "result.json", 1),
    KillPoint(
        "report.html written, before its rename", "replace_before", "report.html", pages=True
    ),
]


# --------------------------------------------------------------------------- in the child


def _die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _target_of(path: Any) -> str:
    """'last.pt' for last.pt and for its temporary file '.last.pt.tmp-123'."""
    name = Path(os.fsdecode(path)).name
    return name[1:].split(".tmp-")[0] if name.startswith(".") and ".tmp-" in name else name


def install(point: KillPoint) -> None:
    """Patch the trainer (in this child only) so that it kills itself at `point`."""
    from archc.trainer import checkpoint, lock
    from archc.trainer.augment import BatchPipeline

    fired = {"n": 0}

    def hit(target: str = "") -> bool:
        if point.target and target != point.target:
            return False
        fired["n"] += 1
        return fired["n"] == point.nth

    if point.hook == "step":
        original_batch = BatchPipeline.train_batch

        def train_batch(self: Any, *args: Any) -> Any:
            if hit():
                _die()
            return original_batch(self, *args)

        BatchPipeline.train_batch = train_batch  # type: ignore[method-assign]
    elif point.hook == "save_mid":
        original_save = checkpoint.torch.save

        def save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
            if not hit(_target_of(f.name)):
                return original_save(obj, f, *args, **kwargs)
            buffer = io.BytesIO()
            original_save(obj, buffer, *args, **kwargs)
            data = buffer.getvalue()
            f.write(data[: len(data) // 2])
            f.flush()
            os.fsync(f.fileno())
            _die()

        checkpoint.torch.save = save
    elif point.hook == "fsync":
        original_fsync = os.fsync

        def fsync(fd: int) -> None:
            try:
                target = _target_of(os.readlink(f"/proc/self/fd/{fd}"))
            except OSError:
                target = ""
            if hit(target):
                _die()
            original_fsync(fd)

        os.fsync = fsync
    elif point.hook in ("replace_before", "replace_after"):
        original_replace = os.replace

        def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
            due = hit(_target_of(dst))
            if due and point.hook == "replace_before":
                _die()
            original_replace(src, dst, *args, **kwargs)
            if due:
                _die()

        os.replace = replace
    elif point.hook == "lock_write":
        original_write = lock.os.write

        def write(fd: int, *args: Any, **kwargs: Any) -> Any:
            if hit():
                _die()
            return original_write(fd, *args, **kwargs)

        lock.os.write = write  # the lock is held and the file truncated, but still empty
    else:
        raise ValueError(f"unknown hook {point.hook}")


def _after_epoch(epoch: int, action: str, arg: str) -> None:
    """Once epoch `epoch`'s metrics are written: 'fill' the disk holding
    `arg`, or 'readonly' remount it."""
    from archc.trainer import loop

    original = loop.write_metrics

    def write_metrics(out: Path, history: list[dict[str, Any]]) -> None:
        original(out, history)
        if len(history) != epoch:
            return
        if action == "fill":
            fill_disk(Path(arg))
        elif action == "readonly":
            import subprocess

            subprocess.run(["mount", "-o", "remount,bind,ro", arg], check=True)
        else:
            raise ValueError(action)

    loop.write_metrics = write_metrics


def fill_disk(path: Path) -> None:
    """Write zeros to `path` until the file system is full."""
    chunk = b"\0" * 4096
    with path.open("wb", buffering=0) as fh:
        try:
            while True:
                fh.write(chunk)
        except OSError:
            pass
        try:
            while True:
                fh.write(b"\0")
        except OSError:
            pass


def _child(
    argv: list[str],
    log: str,
    point: KillPoint | None,
    hold: str | None,
    after: tuple[int, str, str] | None = None,
) -> None:
    """Body of a child: `archc <argv>` with output in `log`; exits with its return code."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", closefd=False), line_buffering=True)
    sys.stderr = io.TextIOWrapper(os.fdopen(2, "wb", closefd=False), line_buffering=True)
    if point is not None:
        install(point)
    if hold is not None:
        _hold_after_first_epoch(Path(hold))
    if after is not None:
        _after_epoch(*after)
    from archc.cli import main

    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse errors
        rc = exc.code if isinstance(exc.code, int) else 2
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


def _hold_after_first_epoch(release: Path) -> None:
    """Pause after epoch 1's metrics (lock held, files written) until `release` exists."""
    from archc.trainer import loop

    original = loop.write_metrics

    def write_metrics(out: Path, history: list[dict[str, Any]]) -> None:
        original(out, history)
        (out.parent / f"{out.name}.holding").touch()
        deadline = time.monotonic() + 300
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    loop.write_metrics = write_metrics


# --------------------------------------------------------------------------- in the test


_CONTEXT: list[Any] = []


def context() -> Any:
    """The forkserver context, started once per test process with torch and the trainer imported."""
    if not _CONTEXT:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([  # everything a run imports, so that no child imports again
            "torch", "torch._dynamo", "torch.optim", "torch.utils.tensorboard", "torchvision",
            "PIL.Image", "ruamel.yaml", "archc.cli", "archc.trainer.cli", "archc.trainer.api",
            "archc.trainer.loop", "archc.trainer.data", "archc.trainer.augment",
            "archc.compiler.emit", "tests.robustness.harness",
        ])  # fmt: skip
        _CONTEXT.append(ctx)
    return _CONTEXT[0]


@dataclass
class Child:
    process: Any
    log: Path

    def wait(self, timeout: float = 300) -> int:
        self.process.join(timeout)
        if self.process.exitcode is None:
            self.process.kill()
            self.process.join()
            raise AssertionError(f"archc train did not finish in {timeout} s:\n{self.output()}")
        return int(self.process.exitcode)

    def kill(self) -> None:
        self.process.kill()  # SIGKILL
        self.process.join()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    @property
    def pid(self) -> int:
        return int(self.process.pid)


def start(
    argv: list[str],
    log: Path,
    point: KillPoint | None = None,
    hold: Path | None = None,
    after: tuple[int, str, str] | None = None,
) -> Child:
    """Start `archc <argv>` in a child process (see module docstring).

    `hold`: pause after epoch 1 until that file exists. `after`: (epoch, 'fill' | 'readonly', path)
    to fill a disk or remount a bind mount read-only once that epoch is on disk.
    """
    proc = context().Process(
        target=_child, args=(argv, str(log), point, str(hold) if hold else None, after), daemon=True
    )
    proc.start()
    return Child(proc, log)


def train_argv(out: Path, *extra: str, spec: Path = TINY, pages: bool = False) -> list[str]:
    """`archc train` on one CPU thread (a spec may not choose threads: the runner's flag does).

    Without its pages (diagram, report, HTML: half a tiny run's CPU) unless `pages`: the random
    kills keep them, so that a kill may land while they are written."""
    # The memory format is pinned: a start-up trial could choose differently for the reference run
    # and for a run restarted from scratch, and the comparison is bitwise.
    argv = ["train", str(spec), "--out", str(out), "--workers", "1", "--no-channels-last"]
    return argv + ([] if pages else ["--no-pages"]) + list(extra)


def run(
    argv: list[str],
    log: Path,
    point: KillPoint | None = None,
    timeout: float = 300,
    after: tuple[int, str, str] | None = None,
) -> tuple[int, str]:
    child = start(argv, log, point, after=after)
    rc = child.wait(timeout)
    return rc, child.output()


# ------------------------------------------------------------------------- checking a run directory


def weights(path: Path) -> dict[str, Any]:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def check_interrupted(out: Path, epochs: int = EPOCHS) -> int:
    """Invariants of a run directory after a kill; returns the epoch of its checkpoint (0: none).

    A checkpoint, if any, loads with weights_only=True and is complete; metrics.csv and
    metrics.jsonl hold whole lines only, epochs 1..m, equal to the checkpoint's own history,
    at most one epoch behind it (they are written right after it); result.json exists only
    for a finished run.
    """
    from archc.trainer.checkpoint import load_checkpoint

    names = {p.name for p in out.iterdir()} if out.exists() else set()
    stray = {n for n in names - RUN_FILES if ".tmp-" not in n}
    assert not stray, f"unexpected files in {out}: {stray}"
    epoch, history = 0, []
    if "last.pt" in names:
        state = load_checkpoint(out / "last.pt")
        epoch, history = int(state["epoch"]), state["history"]
        assert 1 <= epoch <= epochs and [row["epoch"] for row in history] == list(
            range(1, epoch + 1)
        )
    if "best.pt" in names:
        best = load_checkpoint(out / "best.pt")
        assert best["epoch"] <= max(epoch, 1) and "last.pt" in names
    rows = read_metrics(out)
    for kind, kind_rows in rows.items():
        assert epoch - 1 <= len(kind_rows) <= epoch, (
            f"{kind} has {len(kind_rows)} rows, the checkpoint {epoch} epochs"
        )
        assert_rows_match(kind, kind_rows, history)
    if "result.json" in names:
        record = json.loads((out / "result.json").read_text())
        assert record["status"] == "completed" and record["epochs_completed"] == epochs == epoch
    return epoch


def read_metrics(out: Path) -> dict[str, list[dict[str, Any]]]:
    """The rows of metrics.csv and metrics.jsonl that exist; every line must be whole."""
    from archc.trainer.metrics import COLUMNS

    rows: dict[str, list[dict[str, Any]]] = {}
    csv_path, jsonl_path = out / "metrics.csv", out / "metrics.jsonl"
    if csv_path.exists():
        text = csv_path.read_text()
        assert text.endswith("\n"), "metrics.csv ends in a partial line"
        reader = csv.DictReader(io.StringIO(text))
        assert _in_order(reader.fieldnames or (), COLUMNS)
        rows["csv"] = list(reader)
        assert all(
            None not in row and all(v not in (None, "") for v in row.values())
            for row in rows["csv"]
        ), "short csv row"
    if jsonl_path.exists():
        text = jsonl_path.read_text()
        assert text == "" or text.endswith("\n"), "metrics.jsonl ends in a partial line"
        rows["jsonl"] = [json.loads(line) for line in text.splitlines()]
        assert all(_in_order(tuple(row), COLUMNS) for row in rows["jsonl"])
    return rows


def _in_order(fields: Any, columns: tuple[str, ...]) -> bool:
    """The metric columns a run has (val_* and *_top5 only where they apply), in the file order."""
    from archc.trainer.metrics import ALWAYS

    return set(ALWAYS) <= set(fields) and tuple(fields) == tuple(c for c in columns if c in fields)


def assert_rows_match(kind: str, rows: list[dict[str, Any]], history: list[dict[str, Any]]) -> None:
    from archc.trainer.metrics import COLUMNS

    for row, ref in zip(rows, history, strict=False):
        for key in (c for c in COLUMNS if c in ref):
            if kind == "jsonl":
                assert row[key] == ref[key], (kind, key, row, ref)
            else:
                assert abs(float(row[key]) - float(ref[key])) <= 1e-5 * max(
                    1.0, abs(float(ref[key]))
                ), (kind, key, row, ref)


def check_completed(out: Path, reference: Path | None, epochs: int = EPOCHS) -> dict[str, Any]:
    """A finished run: result.json, one metrics row per epoch, no temp or lock files, and the
    reference run's exact final weights (deterministic training, so a resumed run loses nothing)."""
    import torch

    from archc.trainer.checkpoint import load_checkpoint

    record = json.loads((out / "result.json").read_text())
    assert record["status"] == "completed" and record["epochs_completed"] == epochs
    state = load_checkpoint(out / "last.pt")
    assert state["epoch"] == epochs
    rows = read_metrics(out)
    assert set(rows) == {"csv", "jsonl"}
    for kind, kind_rows in rows.items():
        assert [int(r["epoch"]) for r in kind_rows] == list(range(1, epochs + 1)), kind
        assert_rows_match(kind, kind_rows, state["history"])
    names = {p.name for p in out.iterdir()}
    assert names <= RUN_FILES - {"archc.lock"}, (
        f"left behind: {names - RUN_FILES | ({'archc.lock'} & names)}"
    )
    if reference is not None:
        ref, got = weights(reference / "last.pt"), state["model"]
        assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref), (
            "resumed weights differ from the reference run"
        )
    return record
