"""Shared helpers for the compiler-core tests: write a spec to disk, compile and cross-check it."""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
TEST_SPECS = REPO / "tests" / "specs"

# One compute thread per process (torch reads this when it is first imported): `make test` runs two
# xdist workers on shared cores, where more threads only spin against each other (system time, not
# work). Subprocesses (the CLI and doc-example tests) inherit the setting through the environment.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """With ARCHC_CPU_PROFILE=FILE, append each test's CPU seconds (user+sys, its subprocesses
    included; setup and teardown too) to FILE as `seconds<TAB>nodeid` lines: how the suite's
    budget in docs/design.md is tracked under load, where wall-clock durations mislead."""
    target = os.environ.get("ARCHC_CPU_PROFILE")
    if not target:
        yield
        return
    start = _cpu()
    yield
    with open(target, "a") as fh:
        fh.write(f"{_cpu() - start:.3f}\t{item.nodeid}\n")


@contextlib.contextmanager
def cpu_profiled(what: str) -> Iterator[None]:
    """With ARCHC_CPU_PROFILE set, one more line in it for `what` (a part of a test): a test that
    runs many commands shows which of them cost."""
    target = os.environ.get("ARCHC_CPU_PROFILE")
    start = _cpu() if target else 0.0
    yield
    if target:
        with open(target, "a") as fh:
            fh.write(f"{_cpu() - start:.3f}\tPART {what!r}\n")


def _cpu() -> float:
    """This process's CPU seconds (user+sys), its reaped children's, and multiprocessing's
    forkserver's with the runs it forked and reaped (which this process counts only once it
    reaps the forkserver at the end of the session)."""
    import resource

    usage = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage) + _forkserver_cpu()


def _forkserver_cpu() -> float:
    from multiprocessing import forkserver

    pid = forkserver._forkserver._forkserver_pid  # type: ignore[attr-defined]
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    # utime, stime, cutime, cstime: fields 14 to 17 of proc(5), counted after the command name
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


# multiprocessing's forkserver (the robustness harness's, the sweeps' process pools) is started
# once per test process, importing torch and the trainer: the modules that use it run in one
# xdist worker (`make test` passes --dist loadgroup), so the suite starts it once.
FORKSERVER = pytest.mark.xdist_group("forkserver")


def campaign_size(full: int, floor: int = 1) -> int:
    """How many cases a slow randomized test runs: `full` x ARCHC_FUZZ_SCALE (default 0.05).

    `make test` runs a twentieth of each campaign (fresh random cases on every run, beside the
    derandomized quick-loop cases) so the suite stays within its CPU budget (docs/design.md);
    `make fuzz` (ARCHC_FUZZ_SCALE=1) runs all of it. Never fewer than `floor`.
    """
    scale = float(os.environ.get("ARCHC_FUZZ_SCALE", "0.05"))
    return max(floor, round(full * scale))


@functools.cache
def _spec_facts(path: Path) -> tuple[int, int, int, frozenset[str]]:
    from archc import api

    graph = api.compile_graph(path)
    ops = frozenset(node.op for node in graph)
    return graph.total_macs, graph.total_params, len(graph.nodes), ops


def spec_size(path: Path) -> tuple[int, int]:
    """(MACs, parameters) of a spec, compiled once per process: several test files choose which
    specs get real weights by size when they are collected."""
    return _spec_facts(path)[:2]


def op_covering_specs(paths: list[Path]) -> list[Path]:
    """A few of `paths` that together use every op any of them uses, chosen greedily by new ops per
    cost (a trace or an export grows with the nodes, writing and loading it back with the
    parameters): where a check's outcome depends on which ops a model uses (exporters), these
    prove it for every op the zoo uses."""
    facts = {path: _spec_facts(path) for path in paths}
    cost = {path: nodes + params / 10**6 for path, (_, params, nodes, _) in facts.items()}
    missing = frozenset().union(*(f[3] for f in facts.values()))
    chosen: list[Path] = []
    while missing:
        best = max(paths, key=lambda p: (len(facts[p][3] & missing) / cost[p], -paths.index(p)))
        chosen.append(best)
        missing -= facts[best][3]
    return sorted(chosen)


def lang_specs() -> list[Path]:
    """The language-feature specs of this suite plus every spec of the zoo (specs/*.yaml)."""
    return sorted(TEST_SPECS.glob("lang_*.yaml")) + sorted((REPO / "specs").glob("*.yaml"))


def spec_id(path: Path) -> str:
    """'tests/specs/lang_unet', 'specs/resnet18': a readable test id."""
    return str(path.resolve().relative_to(REPO).with_suffix(""))


@pytest.fixture
def write_spec(tmp_path: Path):
    """`write_spec(text, name="spec.yaml") -> Path`: the dedented text written under tmp_path."""

    def write(text: str, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    return write


def compile_and_verify(spec: Any, *, batch: int = 2, seed: int = 0, **overrides: Any) -> Any:
    """Build a spec and check the emitted module against the static analysis; returns the module.

    Checks, in train and in eval mode: every node's inferred shape equals its runtime shape; the
    forward returns the main output (and in train mode every head, in order) with the inferred
    shapes and leaves its input untouched; parameters and buffers equal the inferred totals, per
    module and overall; and a backward pass through the train-mode outputs works (in-place ops
    must not break autograd).
    """
    import torch

    from archc import api
    from archc.compiler.emit import count_tensors, probe_shapes

    torch.manual_seed(seed)
    model = api.build(spec, **overrides)
    graph = model.archc_graph
    x = torch.randn(batch, *graph.input_shape)
    x_before = x.clone()
    for training in (True, False):
        model.train(training)
        with torch.no_grad():
            shapes = probe_shapes(model, x)
        wrong = {n.id: (n.shape, shapes.get(n.id)) for n in graph if shapes.get(n.id) != n.shape}
        assert not wrong, f"static != runtime shapes (train={training}): {wrong}"
        heads = [h for h in graph.heads if training or not h.train_only]
        expected = [graph.shape_of(graph.output), *(graph.shape_of(h.node) for h in heads)]
        grad = training
        with torch.set_grad_enabled(grad):
            out = model(x.clone().requires_grad_(grad))
        outs = out if heads else (out,)
        assert isinstance(outs, tuple) and len(outs) == len(expected)
        assert [tuple(o.shape) for o in outs] == [(batch, *s) for s in expected]
        assert all(torch.isfinite(o).all() for o in outs)
        if grad:
            sum(o.float().sum() for o in outs).backward()
    assert torch.equal(x, x_before)
    params, buffers = count_tensors(model)
    assert params == graph.total_params == sum(p.numel() for p in model.parameters())
    assert buffers == graph.total_buffers == sum(b.numel() for b in model.buffers())
    assert_node_tensor_counts(model, graph)
    return model


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a subprocess: no PYTHONPATH, no pydantic plugin scan, quiet."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update({"PYDANTIC_DISABLE_PLUGINS": "__all__", **extra})
    return env


def run_python(
    *args: str, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`python ARGS` in a fresh interpreter of this venv, in the repository, environment cleaned."""
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        cwd=cwd or REPO,
        env=clean_env(),
        timeout=timeout,
        check=False,
    )


def run_archc(
    *args: str, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`python -m archc ARGS` in a subprocess, as a user would run it."""
    return run_python("-m", "archc", *args, cwd=cwd, timeout=timeout)


def archc_here(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`archc ARGS` through archc.cli.main in this process (the entry point is that call), with
    the exit status and output a subprocess gives: run_archc costs seconds of CPU importing torch
    again, so use it only where the process is the point (signals, imports, environment)."""
    import contextlib
    import io

    from archc.cli import main

    out, err = io.StringIO(), io.StringIO()
    with (
        contextlib.chdir(cwd or REPO),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse: --help, usage errors
            code = exc.code if isinstance(exc.code, int) else 1
    return subprocess.CompletedProcess(["archc", *args], code, out.getvalue(), err.getvalue())


def assert_node_tensor_counts(model: Any, graph: Any) -> None:
    """Each node's static parameter and buffer counts equal its
    module's (or its learned tensor's)."""
    from archc import ops

    for node in graph:
        if node.module is None or node.shared:
            continue
        if getattr(ops.get(node.op), "owns_tensor", False):
            assert (model.get_parameter(node.module).numel(), 0) == (node.params, node.buffers), (
                node.id
            )
        else:
            sub = model.get_submodule(node.module)
            assert sum(p.numel() for p in sub.parameters()) == node.params, node.id
            assert sum(b.numel() for b in sub.buffers()) == node.buffers, node.id


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop multiprocessing's forkserver if a test started one (tests/robustness/harness.py's, with
    torch imported) and wait for it. Its CPU, and that of the runs it forked and reaped, then
    counts in this process's children, so `/usr/bin/time make test` reports the suite's whole
    cost; a forkserver left to exit on its own is reaped by init and its CPU is counted nowhere."""
    from multiprocessing import forkserver

    forkserver._forkserver._stop()  # type: ignore[attr-defined]
    target = os.environ.get("ARCHC_CPU_PROFILE")
    if target:  # what no test accounts for, so that the profile adds up to the total
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        with open(target, "a") as fh:
            fh.write(f"{_COLLECTED.get('cpu', 0.0):.3f}\tCOLLECTION {worker}\n")
            fh.write(f"{_cpu():.3f}\tSESSION {worker}\n")


_COLLECTED: dict[str, float] = {}


def pytest_collection_finish(session: pytest.Session) -> None:
    _COLLECTED["cpu"] = _cpu()
