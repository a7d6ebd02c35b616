"""Training-memory model: what one training step holds, statically, from the
IR and torch's autograd rules.

A step holds the parameters, buffers and optimizer state all the time; the forward adds the tensors
autograd saves for the backward (and frees the rest at their last use, as archc's generated forward
does); the backward frees the saved tensors layer by layer while activation gradients and parameter
gradients appear; the optimizer step then runs with every gradient alive. We replay those three
phases over the graph with byte counts and report the highest point, plus the components.

No torch import: which tensors each op's backward keeps is declared on the op's class
(`Op.autograd`, from torch's derivatives.yaml), and checked against a measured CPU step in
tests/test_memory.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from archc import ops
from archc.compiler.ir import INPUT, Graph, Node
from archc.ops.base import Autograd, Op, numel

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class TrainingMemory:
    """Bytes of one training step at a batch size and dtype; `peak`
    per optimizer is the estimate."""

    batch: int
    dtype: str
    params: int
    buffers: int
    grads: int
    optimizer_state: dict[str, int]
    input: int
    saved_activations: int
    forward_activations: int
    peak: dict[str, int]
    phase: dict[str, str]  # which phase sets each optimizer's peak: forward, backward or step

    def as_dict(self) -> dict[str, object]:
        return {
            "batch": self.batch,
            "dtype": self.dtype,
            "params": self.params,
            "buffers": self.buffers,
            "grads": self.grads,
            "optimizer_state": dict(self.optimizer_state),
            "input": self.input,
            "saved_activations": self.saved_activations,
            "forward_activations": self.forward_activations,
            "peak": dict(self.peak),
            "peak_phase": dict(self.phase),
        }


def dtype_bytes(dtype: str) -> int:
    try:
        return DTYPE_BYTES[dtype]
    except KeyError:
        raise ValueError(
            f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPE_BYTES)}"
        ) from None


def buffer_bytes(graph: Graph, dtype: str) -> int:
    """Buffers in the dtype, but int64 ones (BN's num_batches_tracked, index buffers) at 8 bytes."""
    size = dtype_bytes(dtype)
    total = 0
    for node in graph:
        if node.shared or not node.buffers:
            continue
        counters = _op(node).int64_buffers(node.args, node.buffers)
        total += (node.buffers - counters) * size + counters * 8
    return total


def _op(node: Node) -> Op:
    op = ops.get(node.op)
    if op is None:
        raise ValueError(f"node '{node.id}' has an unregistered op '{node.op}'")
    return op


def _autograd(node: Node) -> Autograd:
    return _op(node).autograd


def is_view(node: Node) -> bool:
    """The node's output is a view of its input: it allocates no storage of its own."""
    return _autograd(node).view


def _extra_bytes(node: Node, batch: int, size: int, inplace: frozenset[str]) -> int:
    """Side tensors a backward keeps besides activations: pool indices, dropout
    masks, norm statistics, clones."""
    rule = _autograd(node)
    if rule.saves == "clone_when_inplace" and node.id in inplace:
        return numel(node.shape) * batch * size
    return sum(side.bytes(node.shape, batch, size) for side in rule.side)


@dataclass
class _Replay:
    """Byte bookkeeping of the step replay: live storages, their
    readers and savers, and the peak."""

    graph: Graph
    batch: int
    size: int
    storage: dict[str, str] = field(
        default_factory=dict
    )  # node id -> id of the node that allocated its memory
    bytes_of: dict[str, int] = field(default_factory=dict)  # storage -> bytes
    live: int = 0
    peak: int = 0
    peak_phase: str = "forward"

    def out_bytes(self, node_id: str) -> int:
        return numel(self.graph.shape_of(node_id)) * self.batch * self.size

    def touch(self, phase: str) -> None:
        if self.live > self.peak:
            self.peak, self.peak_phase = self.live, phase


def _requires_grad(nodes: Iterable[Node]) -> dict[str, bool]:
    needs: dict[str, bool] = {INPUT: False}
    for node in nodes:
        needs[node.id] = bool(node.params) or any(needs[i] for i in node.inputs)
    return needs


def _saved_storages(
    node: Node, replay: _Replay, needs: dict[str, bool], inplace: frozenset[str]
) -> set[str]:
    """Storages this node's backward keeps alive (none when no gradient flows through it)."""
    if not needs[node.id]:
        return set()
    rule = _autograd(node).saves
    if rule == "none" or (
        rule == "clone_when_inplace" and node.id in inplace
    ):  # the clone is an extra
        return set()
    if rule == "output" or (rule == "input_when_fresh" and node.id in inplace):
        return {replay.storage[node.id]}
    if rule == "each_other":  # each factor is kept for the other factors' gradients
        return {
            replay.storage[i]
            for k, i in enumerate(node.inputs)
            if any(needs[j] for m, j in enumerate(node.inputs) if m != k)
        }
    return {replay.storage[i] for i in node.inputs}


class StepReplay(NamedTuple):
    """Bytes of one replayed step, parameters, buffers and optimizer state left out."""

    # the highest point of forward and backward: batch, activations, side tensors, gradients
    peak: int
    saved: (
        int  # what autograd holds at the end of the forward (the batch and side tensors included)
    )
    forward: (
        int  # every tensor the forward creates, none freed (in-place layers and views create none)
    )
    input: int  # the batch, held by the caller for the whole step
    grads: int  # parameter gradients (set to None before each step, as archc's trainer does)
    phase: str  # "forward" or "backward": where the peak is


def replay_step(graph: Graph, batch: int, dtype: str) -> StepReplay:
    """Replay a forward and a backward over the graph with byte
    counts (see the module docstring)."""
    size = dtype_bytes(dtype)
    nodes = list(graph)  # training runs every head
    inplace = graph.inplace_nodes
    needs = _requires_grad(nodes)
    r = _Replay(graph, batch, size)
    r.storage[INPUT] = INPUT
    r.bytes_of[INPUT] = r.out_bytes(INPUT)
    for node in nodes:
        aliased = _autograd(node).view or node.id in inplace
        r.storage[node.id] = r.storage[node.inputs[0]] if aliased else node.id
        if not aliased:
            r.bytes_of[node.id] = r.out_bytes(node.id)
    outputs = [graph.output, *(h.node for h in graph.heads)]
    last_read: dict[str, int] = {}
    for k, node in enumerate(nodes):
        for i in node.inputs:
            last_read[r.storage[i]] = k
    for o in outputs:
        last_read[r.storage[o]] = len(nodes)  # kept for the loss
    saved_by: dict[str, set[str]] = {}
    saves: dict[str, set[str]] = {}
    for node in nodes:
        saves[node.id] = _saved_storages(node, r, needs, inplace)
        for s in saves[node.id]:
            saved_by.setdefault(s, set()).add(node.id)
    extras = {n.id: _extra_bytes(n, batch, size, inplace) if needs[n.id] else 0 for n in nodes}
    forward_total = sum(r.bytes_of.values()) - r.bytes_of[INPUT]

    # forward: allocate outputs, free what is neither read later nor saved
    r.live = r.bytes_of[INPUT]
    alive = {INPUT}
    for k, node in enumerate(nodes):
        sid = r.storage[node.id]
        if sid not in alive:
            alive.add(sid)
            r.live += r.bytes_of[sid]
        r.live += extras[node.id]
        r.touch("forward")
        for s in {r.storage[i] for i in node.inputs} | {sid}:
            if s != INPUT and s in alive and last_read.get(s, -1) <= k and not saved_by.get(s):
                alive.discard(s)
                r.live -= r.bytes_of[s]
    loss_side = sum(r.out_bytes(o) for o in outputs)  # log_softmax results kept by cross-entropy
    r.live += loss_side
    r.touch("forward")
    saved_end = sum(r.bytes_of[s] for s in alive if saved_by.get(s)) + sum(extras.values())

    # backward: gradient buffers are refcounted so that
    # add/concat/views share them without allocating
    refs: dict[int, int] = {}
    gbytes: dict[int, int] = {}
    pending: dict[str, int] = {}
    counter = iter(range(1 << 62))

    def new_grad(nbytes: int) -> int:
        gid = next(counter)
        refs[gid], gbytes[gid] = 1, nbytes
        r.live += nbytes
        return gid

    def drop(gid: int) -> None:
        refs[gid] -= 1
        if refs[gid] == 0:
            r.live -= gbytes.pop(gid)
            del refs[gid]

    for o in outputs:
        if o in pending:  # a head on the main output itself: the two loss gradients are summed
            extra = new_grad(r.out_bytes(o))
            r.touch("backward")
            total = new_grad(r.out_bytes(o))
            drop(pending[o])
            drop(extra)
            pending[o] = total
        else:
            pending[o] = new_grad(r.out_bytes(o))
    r.live -= loss_side
    r.touch("backward")
    param_grads = 0
    for node in reversed(nodes):
        g = pending.pop(node.id, None)
        if g is not None and needs[node.id]:
            pbytes = (0 if node.shared else node.params) * size
            param_grads += pbytes
            r.live += pbytes
            for i in dict.fromkeys(node.inputs):
                if not needs[i]:
                    continue
                if _autograd(node).pass_through:
                    refs[g] += 1
                    contribution = g
                else:
                    contribution = new_grad(r.out_bytes(i))
                if i in pending:  # a second reader: the accumulated sum is a new tensor
                    total = new_grad(r.out_bytes(i))
                    r.touch("backward")
                    drop(pending[i])
                    drop(contribution)
                    pending[i] = total
                else:
                    pending[i] = contribution
            r.touch("backward")
        r.live -= extras[node.id]
        for s in saves[node.id]:
            saved_by[s].discard(node.id)
            if not saved_by[s] and s in alive and s != INPUT:
                alive.discard(s)
                r.live -= r.bytes_of[s]
        if g is not None:
            drop(g)
    return StepReplay(
        r.peak, saved_end, forward_total, r.bytes_of[INPUT], param_grads, r.peak_phase
    )


def largest_param_tensor(graph: Graph) -> int:
    """Elements of the largest parameter tensor: a for-loop Adam step
    allocates two temporaries that size."""
    best = 0
    for node in graph:
        if node.shared or not node.params:
            continue
        best = max(best, _op(node).largest_param_tensor(node.args, node.params, node.shape))
    return best


def training_memory(
    graph: Graph, batch: int = 1, dtype: str = "float32", foreach: bool = False
) -> TrainingMemory:
    """The step's memory for SGD with momentum and for Adam, with the components it adds up from.

    `foreach=True` models torch's multi-tensor optimizers (the default on CUDA), whose Adam step
    allocates one temporary per parameter at once; the default models the CPU for-loop step.
    """
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    size = dtype_bytes(dtype)
    params = graph.total_params * size
    buffers = buffer_bytes(graph, dtype)
    peak_act, saved, forward_total, input_bytes, grads, phase = replay_step(
        graph, batch, dtype
    )  # StepReplay
    state = {"sgd": params, "adam": 2 * params}
    step_temp = {"sgd": 0, "adam": params if foreach else 2 * largest_param_tensor(graph) * size}
    peak: dict[str, int] = {}
    phases: dict[str, str] = {}
    for name in OPTIMIZERS:
        during_pass = params + buffers + state[name] + peak_act
        during_step = params + buffers + state[name] + grads + step_temp[name] + input_bytes
        peak[name] = max(during_pass, during_step)
        phases[name] = phase if during_pass >= during_step else "step"
    return TrainingMemory(
        batch, dtype, params, buffers, grads, state, input_bytes, saved, forward_total, peak, phases
    )


__all__ = [
    "DTYPE_BYTES",
    "OPTIMIZERS",
    "StepReplay",
    "TrainingMemory",
    "buffer_bytes",
    "dtype_bytes",
    "is_view",
    "replay_step",
    "training_memory",
]
