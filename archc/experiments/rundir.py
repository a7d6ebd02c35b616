"""What a run directory says about its run: done, diverged, failed, partial (resumable) or pending.

The directory is the truth: the sweep manifest only caches these states. result.json is written
atomically by the trainer (status completed or diverged); failure.json by the sweep when a run
fails for any other reason; last.pt without a result means an interrupted run to resume.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archc.experiments.files import write_file

RESULT = "result.json"
FAILURE = "failure.json"
CHECKPOINT = "last.pt"
METRICS = "metrics.jsonl"
LOG = "train.log"
MANIFEST = "sweep.json"
STATUSES = ("done", "diverged", "failed", "partial", "pending", "running")
FINISHED = ("done", "diverged")
REQUIRED = (
    "params",
    "final_test_acc",
    "best_test_acc",
    "final_train_loss",
    "train_time_s",
    "epochs_completed",
)


@dataclass
class RunState:
    """A run directory's status, its error text if any, and its result record once there is one."""

    status: str
    error: str | None = None
    record: dict[str, Any] | None = None


def read_json(path: Path) -> Any:
    """Parsed JSON, or None for a missing or unreadable file."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def is_run_dir(path: Path) -> bool:
    return any((path / name).is_file() for name in (RESULT, FAILURE, CHECKPOINT, METRICS))


def read_state(run_dir: Path) -> RunState:
    """The status of the run in run_dir, from the files it holds."""
    record = read_json(run_dir / RESULT)
    if isinstance(record, dict):
        if record.get("status") == "completed" and all(k in record for k in REQUIRED):
            return RunState("done", None, record)
        if record.get("status") == "diverged":
            return RunState("diverged", str(record.get("error", "training diverged")), record)
    failure = read_json(run_dir / FAILURE)
    if isinstance(failure, dict):
        return RunState(
            "failed",
            str(failure.get("error", "failed")),
            record if isinstance(record, dict) else None,
        )
    if (run_dir / CHECKPOINT).is_file():
        return RunState("partial")
    return RunState("pending")


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    """The per-epoch rows of metrics.jsonl (rewritten whole by the trainer each epoch)."""
    try:
        lines = (run_dir / METRICS).read_text().splitlines()
    except OSError:
        return []
    rows = []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and "epoch" in row:
            rows.append(row)
    return rows


def write_failure(run_dir: Path, error: str, exit_code: int | None = None) -> None:
    """Record why a run failed, next to whatever it had written so far."""
    record = {
        "status": "failed",
        "error": error,
        "exit_code": exit_code,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    write_file(run_dir / FAILURE, json.dumps(record, indent=2) + "\n")


def set_aside(path: Path) -> Path | None:
    """Rename path to NAME.N.EXT (the first free N) so a retry
    starts clean and nothing is deleted."""
    if not path.exists():
        return None
    n = 1
    while (target := path.with_name(f"{path.stem}.{n}{path.suffix}")).exists():
        n += 1
    path.rename(target)
    return target


def last_log_line(run_dir: Path) -> str | None:
    """The last non-empty line of train.log: the gist of a crash nobody caught."""
    try:
        with (run_dir / LOG).open("rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 4096))
            tail = f.read().decode(errors="replace")
    except OSError:
        return None
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return lines[-1] if lines else None
