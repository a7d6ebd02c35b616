"""Multi-node training through torchrun's c10d rendezvous: two agents on the loopback interface,
each with its own worker, against one agent with the same global batch; and a resume after one
agent is killed mid-epoch."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from archc.trainer.checkpoint import load_checkpoint
from tests.conftest import REPO, clean_env, run_archc
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


def _agents(spec: Path, flags: list[str], out: Path, *extra: str) -> list[subprocess.Popen[str]]:
    """Two `archc train --nnodes 2` agents, as two machines would start them."""
    endpoint = f"127.0.0.1:{_free_port()}"
    env = clean_env(GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1")
    command = [
        sys.executable,
        "-m",
        "archc",
        "train",
        str(spec),
        *flags,
        "--nnodes",
        "2",
        "--rdzv-endpoint",
        endpoint,
        "--out",
        str(out),
        *extra,
    ]
    return [
        subprocess.Popen(
            [*command, "--node-rank", str(rank)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=env,
        )
        for rank in range(2)
    ]


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants (torchrun starts its workers in new sessions)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    todo, doomed = [pid], []
    while todo:
        current = todo.pop()
        doomed.append(current)
        todo += children.get(current, [])
    for victim in doomed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)


def _finish(agents: list[subprocess.Popen[str]], timeout: float = 400) -> list[tuple[int, str]]:
    results = []
    for agent in agents:
        try:
            _, err = agent.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_tree(agent.pid)
            _, err = agent.communicate()
        results.append((agent.returncode, err))
    return results


@pytest.mark.slow
def test_two_agents_on_loopback_equal_one_agent_and_resume_after_one_is_killed(
    tmp_path: Path,
) -> None:
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
    ]
    single = run_archc("train", str(spec), *flags, "--out", str(tmp_path / "single"), timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]

    results = _finish(_agents(spec, flags, tmp_path / "multi"))
    assert [rc for rc, _ in results] == [0, 0], "\n".join(err[-2000:] for _, err in results)
    one, two = (
        weights_of(tmp_path / "single" / "last.pt"),
        weights_of(tmp_path / "multi" / "last.pt"),
    )
    for key in one:  # same global batches; DDP averages the two halves' gradients
        assert torch.allclose(one[key], two[key], atol=1e-5, rtol=1e-4), key
    assert load_checkpoint(tmp_path / "multi" / "last.pt")["epoch"] == 3

    out = tmp_path / "killed"
    agents = _agents(spec, flags, out)
    deadline = time.monotonic() + 300
    while (
        time.monotonic() < deadline
        and all(a.poll() is None for a in agents)
        and not (out / "last.pt").is_file()
    ):
        time.sleep(0.01)  # the first last.pt is written after step 1 (--checkpoint-every 1)
    _kill_tree(agents[1].pid)  # one machine goes away mid-epoch: its agent and its worker
    survivor = _finish(agents, timeout=180)[0]
    assert survivor[0] != 0  # its peer is gone: the run stops rather than hangs
    state = load_checkpoint(out / "last.pt")
    assert state["step"] > 0 and state["epoch"] < 3, (
        state["epoch"],
        state["step"],
        survivor[1][-3000:],
    )

    results = _finish(_agents(spec, flags, out, "--resume"))
    assert [rc for rc, _ in results] == [0, 0], "\n".join(err[-2000:] for _, err in results)
    resumed = weights_of(out / "last.pt")
    assert all(
        torch.equal(two[key], resumed[key]) for key in two
    )  # exactly the uninterrupted two-agent run
