"""Refuse to allocate a model that static analysis says cannot fit in memory.

A spec is untrusted input: `linear: 10000000` after a large feature map would ask for terabytes.
We compare float32 weights plus one sample's activations against the memory available now,
before any tensor exists. `--force` (or `force=True`) skips the check.
"""

from __future__ import annotations

import os

from archc import ops
from archc.compiler.ir import Graph, Node
from archc.errors import SpecError
from archc.ops.base import numel

BYTES_PER_ELEMENT = 4  # float32, the dtype modules are created in


# (limit, usage) files of the memory cgroup a container runs in: v2, then v1
CGROUP_FILES = (
    ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
    ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
)


def available_memory() -> int | None:
    """Bytes of memory available to allocate now, or None if unknown.

    MemAvailable on Linux (else the free pages), capped by the headroom under a container's
    memory limit: inside a container /proc/meminfo describes the whole host.
    """
    system = _system_available()
    headroom = cgroup_headroom()
    if system is None or headroom is None:
        return headroom if system is None else system
    return min(system, headroom)


def _system_available() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def cgroup_headroom() -> int | None:
    """Bytes left under this process's cgroup memory limit, or None when there is no limit."""
    for limit_file, usage_file in CGROUP_FILES:
        try:
            with open(limit_file) as fh:
                limit = fh.read().strip()
            with open(usage_file) as fh:
                usage = int(fh.read())
            if limit == "max" or int(limit) >= 1 << 60:  # v1 writes "no limit" as a huge number
                return None
            return max(0, int(limit) - usage)
        except (OSError, ValueError):
            continue
    return None


def workspace(graph: Graph, node: Node) -> int:
    """Elements one sample's forward of the node allocates for a moment besides its output."""
    op = ops.get(node.op)
    if op is None:
        return 0
    return op.workspace(node.args, [graph.shape_of(i) for i in node.inputs], node.shape)


def model_bytes(graph: Graph, batch: int = 1) -> tuple[int, int]:
    """(weights and buffers, activations of one forward at `batch`) in float32 bytes: every
    node's output, plus the largest transient workspace of one op (attention scores)."""
    weights = (graph.total_params + graph.total_buffers) * BYTES_PER_ELEMENT
    outputs = sum(numel(n.shape) for n in graph)
    transient = max((workspace(graph, n) for n in graph), default=0)
    return weights, (outputs + transient) * batch * BYTES_PER_ELEMENT


def check_fits(graph: Graph, batch: int = 1, available: int | None = None) -> None:
    """Raise SpecError when the model cannot be allocated here (`force` skips the call)."""
    available = available_memory() if available is None else available
    if available is None:
        return
    weights, activations = model_bytes(graph, batch)
    if weights + activations > available:
        # point at the layer that costs the most, so the error has a line to fix
        largest = max(
            graph,
            key=lambda n: n.params + n.buffers + (numel(n.shape) + workspace(graph, n)) * batch,
            default=None,
        )
        where = ""
        if largest is not None:
            held = f", {largest.buffers:,} buffer values" if largest.buffers else ""
            where = f"; the largest layer is '{largest.id}' ({largest.params:,} params{held})"
        stored = "weights and buffers" if graph.total_buffers else "weights"
        raise SpecError(
            f"'{graph.name}' needs about {_gb(weights)} of {stored} and {_gb(activations)} "
            f"of activations (batch {batch}), but only {_gb(available)} of memory is "
            f"available{where}; refusing to allocate (use --force to try anyway)",
            largest.pos if largest is not None else None,
        )


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"
