"""The IR: a flat, topologically ordered graph of op nodes with static shapes and costs.

Everything downstream (reports, diagrams, module emission, export) reads this and only this.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from archc.errors import Pos
from archc.ops.base import Args, Layout, Shape

INPUT = "input"


@dataclass
class Node:
    """One op application. `module` is the dotted attribute path of its
    nn.Module (None if functional)."""

    id: str
    op: str
    args: Args
    inputs: list[str]
    shape: Shape
    params: int
    buffers: int
    macs: int
    other_ops: int
    module: str | None
    scope: str
    label: str
    pos: Pos | None = None
    shared: bool = False  # reuses a parameter-free module declared earlier under the same name
    layout: Layout = None  # what each dimension is (C×H×W, H×W×C, L×D), None where unknown


@dataclass(frozen=True)
class ScopeInfo:
    """A named group of nodes: a block call or a `seq`. Reports nest
    by these; diagrams cluster them."""

    path: str
    kind: str  # "block" or "seq"
    block: str | None
    args: dict[str, Any]
    pos: Pos | None
    checkpoint: bool = False  # recompute its activations in backward (torch.utils.checkpoint)
    defaults: dict[str, Any] = field(
        default_factory=dict
    )  # the block's parameters with literal defaults
    module_order: tuple[
        str, ...
    ] = ()  # child modules declared in this order (the block's module_order)


@dataclass(frozen=True)
class Head:
    """An extra output tapped from an inner node, e.g. GoogLeNet's auxiliary classifiers."""

    name: str
    node: str
    loss_weight: float = 1.0
    train_only: bool = True


@dataclass
class Graph:
    name: str
    input_shape: Shape
    nodes: dict[str, Node] = field(default_factory=dict)
    output: str = INPUT
    heads: list[Head] = field(default_factory=list)
    scopes: dict[str, ScopeInfo] = field(default_factory=dict)
    params_used: dict[str, Any] = field(default_factory=dict)
    input_layout: Layout = None  # the spec's `input_layout`, if it declares one

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes.values())

    def shape_of(self, node_id: str) -> Shape:
        return self.input_shape if node_id == INPUT else self.nodes[node_id].shape

    def layout_of(self, node_id: str) -> Layout:
        """A node's layout; the input's is unknown unless the spec declares it
        (`input: [56, 56, 96]` may be H×W×C): layouts start at the ops that compute in one (a conv's
        output is C×H×W)."""
        return self.input_layout if node_id == INPUT else self.nodes[node_id].layout

    @cached_property
    def consumers(self) -> dict[str, list[str]]:
        """node id -> ids of the nodes that read it (outputs count as readers named '<output>')."""
        users: dict[str, list[str]] = {INPUT: []}
        for node in self:
            users.setdefault(node.id, [])
            for src in node.inputs:
                users[src].append(node.id)
        users[self.output].append("<output>")
        for head in self.heads:
            users[head.node].append("<output>")
        return users

    @property
    def total_params(self) -> int:
        return sum(n.params for n in self if not n.shared)

    @property
    def total_buffers(self) -> int:
        return sum(n.buffers for n in self if not n.shared)

    @property
    def total_macs(self) -> int:
        return self.macs(include_train_only=False)

    def macs(self, include_train_only: bool = False) -> int:
        """MACs of one forward; train-only heads are skipped unless asked (eval-mode convention)."""
        skip = set() if include_train_only else self.train_only_nodes
        return sum(n.macs for n in self if n.id not in skip)

    @cached_property
    def train_only_nodes(self) -> frozenset[str]:
        """Nodes that only train-only heads need: eval-mode forward skips them."""
        needed = self._ancestors([self.output] + [h.node for h in self.heads if not h.train_only])
        return frozenset(n.id for n in self if n.id not in needed)

    def _ancestors(self, roots: list[str]) -> set[str]:
        seen: set[str] = set()
        stack = list(roots)
        while stack:
            nid = stack.pop()
            if nid in seen or nid == INPUT:
                continue
            seen.add(nid)
            stack.extend(self.nodes[nid].inputs)
        return seen

    @cached_property
    def inplace_nodes(self) -> frozenset[str]:
        """Nodes whose op may safely overwrite its input.

        Safe when the input is a fresh tensor made by an op whose backward does not need its own
        output, in the same module (a block never writes into the tensor its caller passed, so it
        can be called alone or checkpointed), and nothing else reads it. A shared module must be
        safe at every use.
        """
        from archc import ops

        users = self.consumers
        safe: set[str] = set()
        for node in self:
            op = ops.get(node.op)
            if op is None or not op.inplace_capable or not node.inputs:
                continue
            src = node.inputs[0]  # the tensor an in-place op overwrites
            if src == INPUT or src in node.inputs[1:] or self.nodes[src].scope != node.scope:
                continue
            producer = ops.get(self.nodes[src].op)
            if producer is not None and producer.fresh_output and users[src] == [node.id]:
                safe.add(node.id)
        by_module: dict[str, list[str]] = {}
        for node in self:
            if node.module:
                by_module.setdefault(node.module, []).append(node.id)
        for uses in by_module.values():
            if not all(u in safe for u in uses):
                safe.difference_update(uses)
        return frozenset(safe)

    @property
    def depth(self) -> int:
        """Weighted layers (conv/linear: `Op.weighted`) on the longest path:
        the 'depth' in ResNet-18's name."""
        from archc import ops  # the registry imports every op module: only when depth is asked for

        best: dict[str, int] = {INPUT: 0}
        for node in self:
            op = ops.get(node.op)
            here = 1 if node.macs and op is not None and op.weighted else 0
            best[node.id] = here + max(best[i] for i in node.inputs)
        return best[self.output]
