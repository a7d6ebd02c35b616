"""Multi-node training through torchrun's c10d rendezvous: two agents on the loopback interface,
each with its own worker, are killed one mid-epoch and resumed; the resumed two-agent run ends
allclose to one process with the same global batch.

That one comparison proves both claims: two agents train as one process does (DDP averages the
two halves of each global batch), and a resume after a lost machine, which its log line shows
starting at the step after the last checkpoint, trains the rest of the run as it would have been
trained. That a resume is bitwise exact is the single-process SIGKILL tests' claim
(tests/train/test_resume.py, tests/train/test_stream.py, tests/robustness/test_faults.py), so no
uninterrupted two-agent run is trained here: each agent costs two interpreters importing torch.

Each agent is `archc train --nnodes 2 --node-rank R` run through archc.cli.main in a thread of
this process (the entry point is that call): what each starts, torchrun and its worker, are real
processes, as on two machines, and a machine going away is its torchrun and its worker killed.
The launcher itself only waits for torchrun, so it need not pay the torch import again."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

import pytest
import torch

from archc.cli import main
from archc.trainer.checkpoint import load_checkpoint
from tests.fake_datasets import write_imagefolder
from tests.train.conftest import spec_file, weights_of

SPEC = """
name: noded
input: [3, 8, 8]
layers:
  - conv: {out: 8, kernel: 3, padding: 1}
  - relu
  - maxpool: 2
  - flatten
  - linear: 3
train:
  batch_size: 8
  epochs: 3
  lr: 0.05
  deterministic: true
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return children


def _torchrun_of(node_rank: int | None = None) -> list[int]:
    """The torchrun agents this process started (the one of `node_rank`, if given)."""
    found = []
    for pid in _children().get(os.getpid(), []):
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"torch.distributed.run" in argv and (
                node_rank is None or f"--node-rank={node_rank}".encode() in argv
            ):
                found.append(pid)
    return found


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants (torchrun starts its workers in new sessions)."""
    children = _children()
    todo, doomed = [pid], []
    while todo:
        current = todo.pop()
        doomed.append(current)
        todo += children.get(current, [])
    for victim in doomed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)


@contextlib.contextmanager
def _agents(spec: Path, flags: list[str], out: Path, *extra: str) -> Iterator[list[Future[int]]]:
    """Two `archc train --nnodes 2` agents, as two machines would start them; on leaving, any
    torchrun still running (a hung run) is killed so that the threads end."""
    argv = ["train", str(spec), *flags, "--nnodes", "2", "--rdzv-endpoint",
            f"127.0.0.1:{_free_port()}", "--out", str(out), *extra]  # fmt: skip
    with ThreadPoolExecutor(2) as pool:
        try:
            yield [pool.submit(main, [*argv, "--node-rank", str(rank)]) for rank in range(2)]
        finally:
            for pid in _torchrun_of():
                _kill_tree(pid)


def _finish(agents: list[Future[int]], timeout: float = 400) -> list[int]:
    """The agents' exit codes; a torchrun still running after `timeout` seconds is killed."""
    deadline = time.monotonic() + timeout
    codes = []
    for agent in agents:
        try:
            codes.append(agent.result(timeout=max(0.0, deadline - time.monotonic())))
        except FutureTimeout:
            for pid in _torchrun_of():
                _kill_tree(pid)
            codes.append(agent.result())
    return codes


@pytest.mark.slow
def test_two_agents_killed_mid_epoch_and_resumed_equal_one_agent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")  # the agents' torchrun and workers inherit it
    root = tmp_path / "inet"
    write_imagefolder(root, classes=3, train=16, val=4, size=(8, 8))
    spec = spec_file(tmp_path, SPEC, "noded")
    flags = [
        "--dataset",
        f"imagefolder:{root}",
        "--data-path",
        "stream",
        "--loader-workers",
        "0",
        "--checkpoint-every",
        "1",
        "--log",
        "plain",
        "--no-pages",  # not tested here, and matplotlib is not thread-safe: two launchers plot
        "--no-tensorboard",  # not tested here: rank 0's worker would import it, twice
    ]
    assert main(["train", str(spec), *flags, "--out", str(tmp_path / "single")]) == 0

    out = tmp_path / "killed"
    with _agents(spec, flags, out) as agents:
        deadline = time.monotonic() + 300
        while (
            time.monotonic() < deadline
            and not any(a.done() for a in agents)
            and not (out / "last.pt").is_file()
        ):
            time.sleep(0.01)  # the first last.pt is written after step 1 (--checkpoint-every 1)
        victim = _torchrun_of(node_rank=1)
        assert len(victim) == 1, victim
        _kill_tree(victim[0])  # one machine goes away mid-epoch: its agent and its worker
        survivor, _ = _finish(agents, timeout=180)
    assert survivor != 0  # its peer is gone: the run stops rather than hangs
    state = load_checkpoint(out / "last.pt")
    assert state["step"] > 0 and state["epoch"] < 3, (state["epoch"], state["step"])

    capfd.readouterr()
    with _agents(spec, flags, out, "--resume") as agents:
        assert _finish(agents) == [0, 0]
    # rank 0's worker continues from the killed run's last step checkpoint, not from the start
    where = f"at epoch {state['epoch'] + 1}, step {state['step'] + 1}"
    assert f"resuming {out / 'last.pt'} {where}" in capfd.readouterr().err
    assert load_checkpoint(out / "last.pt")["epoch"] == 3
    one, two = weights_of(tmp_path / "single" / "last.pt"), weights_of(out / "last.pt")
    assert one.keys() == two.keys()
    for key in one:  # same global batches; DDP averages the two halves' gradients
        assert torch.allclose(one[key], two[key], atol=1e-5, rtol=1e-4), key
