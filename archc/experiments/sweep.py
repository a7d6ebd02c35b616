"""Running a sweep: each pending run in its own process, J at a time,
resumable after any interruption.

Finished runs are skipped, interrupted ones resume from their checkpoint, failed ones are retried
only when asked. A run that fails, diverges or crashes is recorded and the sweep goes on. The
manifest is rewritten (atomically) at every change, and the results are written at the end, also
after Ctrl-C, so what finished is never lost.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from multiprocessing.context import ForkServerContext, SpawnContext
from pathlib import Path
from types import FrameType
from typing import Any

from archc.compiler.train_config import default_threads, machine_cpus
from archc.experiments.errors import ExperimentError
from archc.experiments.manifest import merge, read_manifest, write_manifest
from archc.experiments.plan import SweepPlan
from archc.experiments.rundir import (
    FAILURE,
    FINISHED,
    RESULT,
    last_log_line,
    read_state,
    set_aside,
    write_failure,
)

STOP_GRACE_S = 15.0
# Written after each sweep that trained something (or when missing): a
# rerun that only skips keeps them.
RESULT_FILES = ("results.md", "results.csv", "runs.csv", "curves.png", "curves.svg")
Echo = Callable[[str], None]


@dataclass
class SweepOutcome:
    """What a sweep call did: the manifest's runs with their final status, and the files written."""

    out: Path
    runs: list[dict[str, Any]]
    trained: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    interrupted: bool = False

    def count(self, status: str) -> int:
        return sum(1 for r in self.runs if r["status"] == status)


def echo_stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_sweep(
    plan: SweepPlan,
    *,
    jobs: int = 1,
    retry_failed: bool = False,
    echo: Echo = echo_stderr,
    write_results: bool = True,
) -> SweepOutcome:
    """Run every unfinished run of plan under plan.out, then write
    results.md, results.csv and plots."""
    from archc.trainer.lock import RunLock

    if jobs < 1:
        raise ExperimentError(f"--jobs must be at least 1, got {jobs}")
    cpus = machine_cpus()
    if jobs > cpus:  # more training processes than cores only slow every run down
        echo(
            f"note: --jobs {jobs} lowered to {cpus}: this machine gives archc "
            f"{cpus} CPU{'s' if cpus != 1 else ''} (affinity and cgroup quota)"
        )
        jobs = cpus
    out = plan.out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExperimentError(f"cannot create {out}: {exc.strerror or exc}") from None
    with RunLock(out):
        manifest = merge(read_manifest(out), plan)
        manifest["cwd"] = os.getcwd()  # where relative spec paths in it are rooted
        outcome = SweepOutcome(out, manifest["runs"])
        todo = _select(manifest, plan, retry_failed, outcome)
        write_manifest(out, manifest)
        if outcome.skipped:
            echo(
                f"{len(outcome.skipped)} of {len(manifest['runs'])} "
                "runs already finished; skipping them"
            )
        try:
            with _interrupt_on_sigterm():
                _Scheduler(plan, manifest, todo, jobs, echo, outcome).run()
        except KeyboardInterrupt:
            outcome.interrupted = True
            echo("interrupted: stopped the running trainings; run the same command again to resume")
        finally:
            for entry in manifest["runs"]:
                if entry["status"] == "running":
                    entry["status"] = read_state(out / entry["id"]).status
            write_manifest(out, manifest)
        if write_results and (
            outcome.trained or not all((out / name).is_file() for name in RESULT_FILES)
        ):
            from archc.experiments.results import load_sweep, write_all

            outcome.files = write_all(load_sweep(out), out)
    return outcome


def _select(
    manifest: dict[str, Any], plan: SweepPlan, retry_failed: bool, outcome: SweepOutcome
) -> list[dict[str, Any]]:
    """Refresh every run's status from its directory; return the runs to train now, in order.

    A finished run whose record shows another spec or recipe (a directory reused by hand) is
    refused rather than counted as this sweep's result.
    """
    planned = {run.id: run for run in plan.runs}
    todo = []
    for entry in manifest["runs"]:
        run_dir = plan.out / entry["id"]
        state = read_state(run_dir)
        run = planned.get(entry["id"])
        if run is not None and state.record is not None and (why := run.mismatch(state.record)):
            raise ExperimentError(
                f"{run_dir} holds a run that does not belong to this sweep: {why}; move it away "
                "or choose another --out"
            )
        entry["status"], entry["error"] = state.status, state.error
        if state.status in FINISHED or (state.status == "failed" and not retry_failed):
            outcome.skipped.append(entry["id"])
        else:
            todo.append(entry)
    return todo


@contextlib.contextmanager
def _interrupt_on_sigterm() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C, so a killed sweep still stops its children and saves its state."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _context() -> ForkServerContext | SpawnContext:
    """A fork server that has imported torch and the trainer once; spawn where there is none."""
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["__main__", "archc.experiments.worker"])
        return ctx
    return mp.get_context("spawn")


def _child(job: dict[str, Any]) -> None:
    """Process target; imports the worker lazily so the sweep process itself never imports torch."""
    from archc.experiments.worker import run_job

    run_job(job)


class _Scheduler:
    """Keeps up to `jobs` children running and records each run's outcome as it ends."""

    def __init__(
        self,
        plan: SweepPlan,
        manifest: dict[str, Any],
        todo: list[dict[str, Any]],
        jobs: int,
        echo: Echo,
        outcome: SweepOutcome,
    ) -> None:
        self.plan, self.manifest, self.todo, self.jobs, self.echo, self.outcome = (
            plan,
            manifest,
            todo,
            jobs,
            echo,
            outcome,
        )
        self.threads = default_threads(jobs)
        self.active: dict[Any, tuple[dict[str, Any], Any, float]] = {}
        self.total = len(todo)
        self.started = 0

    def run(self) -> None:
        ctx = _context() if self.todo else None
        queue = list(self.todo)
        try:
            while queue or self.active:
                while queue and len(self.active) < self.jobs:
                    self._start(ctx, queue.pop(0))
                ready = wait(list(self.active))
                for sentinel in ready:
                    self._finish(sentinel)
        finally:
            self._stop_all()

    def _job(self, entry: dict[str, Any]) -> dict[str, Any]:
        out = (self.plan.out / entry["id"]).resolve()
        config = {**entry["config"], "out": str(out), "resume": True, "log": "plain"}
        config.setdefault("workers", self.threads)
        return {
            "id": entry["id"],
            "cwd": os.getcwd(),
            "spec": entry["spec"],
            "set": entry["set"],
            "plugins": list(self.plan.plugins),
            "input_shape": self.plan.input_shape,
            "config": config,
        }

    def _start(self, ctx: Any, entry: dict[str, Any]) -> None:
        run_dir = self.plan.out / entry["id"]
        if entry["status"] == "failed":
            set_aside(run_dir / FAILURE)
        if entry["status"] == "partial" and (run_dir / RESULT).exists():
            set_aside(
                run_dir / RESULT
            )  # unreadable or incomplete: keep it, let the trainer write a new one
        resuming = entry["status"] in ("partial", "failed") and (run_dir / "last.pt").is_file()
        process = ctx.Process(
            target=_child, args=(self._job(entry),), name=f"archc-sweep:{entry['id']}"
        )
        process.start()
        entry["status"], entry["error"] = "running", None
        write_manifest(self.plan.out, self.manifest)
        self.started += 1
        self.active[process.sentinel] = (entry, process, time.perf_counter())
        self.echo(
            f"[{self.started}/{self.total}] {entry['id']}: {'resuming' if resuming else 'training'}"
        )

    def _finish(self, sentinel: Any) -> None:
        entry, process, started = self.active.pop(sentinel)
        process.join()
        run_dir = self.plan.out / entry["id"]
        state = read_state(run_dir)
        code = process.exitcode
        if state.status in ("partial", "pending"):  # the child died before recording anything
            if code == 130:  # stopped by a SIGINT of its own; resumes on the next run of the sweep
                entry["status"], entry["error"] = state.status, None
                self.echo(f"{entry['id']}: interrupted; run the sweep again to resume it")
                return
            reason = (
                f"killed by signal {_signal_name(-code)}"
                if code is not None and code < 0
                else f"exited with code {code}"
            )
            last = last_log_line(run_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            write_failure(
                run_dir,
                f"the training process {reason}" + (f"; last output: {last}" if last else ""),
                code,
            )
            state = read_state(run_dir)
        entry["status"], entry["error"] = state.status, state.error
        write_manifest(self.plan.out, self.manifest)
        self.outcome.trained.append(entry["id"])
        elapsed = time.perf_counter() - started
        if state.status == "done" and state.record is not None:
            self.echo(
                f"{entry['id']}: done in {elapsed:.1f}s, test "
                f"acc {state.record['final_test_acc']:.2%}"
            )
        else:
            self.echo(f"{entry['id']}: {state.status}: {state.error}")

    def _stop_all(self) -> None:
        """Ask running children to stop (SIGINT: they checkpoint-safely unwind), then insist."""
        if not self.active:
            return
        for _, process, _ in self.active.values():
            with contextlib.suppress(ProcessLookupError, TypeError):
                os.kill(process.pid, signal.SIGINT)
        deadline = time.monotonic() + STOP_GRACE_S
        for _, process, _ in self.active.values():
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
        self.active.clear()


def _signal_name(number: int) -> str:
    try:
        return f"{signal.Signals(number).name} ({number})"
    except ValueError:
        return str(number)
