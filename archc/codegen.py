"""Straight-line forward code from the IR: one statement per node, no interpreter loop.

Shared by the in-memory module (`emit`) and the standalone export. In-place activations are used
only where provably safe, and each intermediate is deleted after its last reader so peak memory
matches a hand-written forward.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass

from archc import ops
from archc.ir import INPUT, Graph, Node

Mode = str  # "train", "eval" or "probe"


def inplace_nodes(graph: Graph) -> set[str]:
    """Nodes whose op may safely overwrite its input.

    Safe when the input is a fresh tensor made by an op whose backward does not need its own
    output, and nothing else reads it. A shared module must be safe at every use.
    """
    users = graph.consumers
    safe: set[str] = set()
    for node in graph:
        op = ops.get(node.op)
        if op is None or not op.inplace_capable or not node.inputs:
            continue
        src = node.inputs[0]  # the tensor an in-place op overwrites
        if src == INPUT or src in node.inputs[1:]:
            continue
        producer = ops.get(graph.nodes[src].op)
        if producer is not None and producer.fresh_output and users[src] == [node.id]:
            safe.add(node.id)
    by_module: dict[str, list[str]] = {}
    for node in graph:
        if node.module:
            by_module.setdefault(node.module, []).append(node.id)
    for uses in by_module.values():
        if not all(u in safe for u in uses):
            safe.difference_update(uses)
    return safe


def variable_names(graph: Graph) -> dict[str, str]:
    """A readable, unique Python identifier per node id ('layer1.0.conv1' -> 'layer1_0_conv1')."""
    names = {INPUT: "x"}
    taken = {"x", "self", "torch", "record"}  # the input, and the globals generated code calls
    for node in graph:
        base = re.sub(r"\W", "_", node.id)
        if base[0].isdigit() or keyword.iskeyword(base) or base.startswith("m_"):
            # 'm_' names the container locals of ForwardWriter.module_expr
            base = f"v{base}" if base[0].isdigit() else f"v_{base}" if base.startswith("m_") else f"{base}_"
        name, n = base, 2
        while name in taken:
            name, n = f"{base}_{n}", n + 1
        taken.add(name)
        names[node.id] = name
    return names


@dataclass
class ForwardWriter:
    """Writes `def NAME(self, x): ...` for one mode."""

    graph: Graph

    def module_expr(self, path: str, bound: dict[str, str], lines: list[str]) -> str:
        """`self.conv1`, with containers bound to locals on first use (`m_layer1_0 = ...`)."""
        parts = path.split(".")
        expr = "self"
        for i, part in enumerate(parts):
            prefix = ".".join(parts[: i + 1])
            if prefix in bound:
                expr = bound[prefix]
                continue
            expr = f"{expr}.{part}" if part.isidentifier() and not keyword.iskeyword(part) else f"getattr({expr}, {part!r})"
            if i < len(parts) - 1:
                local = "m_" + re.sub(r"\W", "_", prefix)
                lines.append(f"    {local} = {expr}")
                bound[prefix] = expr = local
        return expr

    def write(self, mode: Mode, func_name: str = "forward") -> str:
        graph = self.graph
        names = variable_names(graph)
        skip = graph.train_only_nodes if mode == "eval" else frozenset()
        nodes = [n for n in graph if n.id not in skip]
        heads = [h for h in graph.heads if mode != "eval" or not h.train_only]
        inplace = inplace_nodes(graph) if mode != "probe" else set()
        keep = {graph.output, *(h.node for h in heads)}
        last_use: dict[str, int] = {}
        for i, node in enumerate(nodes):
            for src in node.inputs:
                last_use[src] = i
        lines = [f"def {func_name}(self, x):"]
        bound: dict[str, str] = {}
        for i, node in enumerate(nodes):
            args = [names[s] for s in node.inputs]
            lines.append(f"    {names[node.id]} = {self.call(node, args, bound, lines, node.id in inplace)}")
            if mode == "probe":
                lines.append(f"    record({node.id!r}, {names[node.id]})")
                continue
            dead = [names[s] for s in dict.fromkeys(node.inputs) if last_use.get(s) == i and s not in keep and s != node.id]
            if dead:
                lines.append(f"    del {', '.join(dead)}")
        if mode == "probe":
            lines.append("    return None")
        elif heads:
            outs = ", ".join(names[n] for n in [graph.output, *(h.node for h in heads)])
            lines.append(f"    return ({outs})")
        else:
            lines.append(f"    return {names[graph.output]}")
        return "\n".join(lines) + "\n"

    def call(self, node: Node, args: list[str], bound: dict[str, str], lines: list[str], inplace: bool) -> str:
        if node.module is not None:
            return f"{self.module_expr(node.module, bound, lines)}({', '.join(args)})"
        op = ops.get(node.op)
        assert op is not None and hasattr(op, "expression"), f"functional op {node.op} needs expression()"
        if inplace:
            return op.inplace_expression(node.args, args)  # type: ignore[attr-defined]
        return op.expression(node.args, args)  # type: ignore[attr-defined]


def forward_sources(graph: Graph) -> dict[str, str]:
    """Source of every forward variant the module needs, keyed by method name."""
    writer = ForwardWriter(graph)
    if any(h.train_only for h in graph.heads):
        return {"_forward_train": writer.write("train", "_forward_train"), "_forward_eval": writer.write("eval", "_forward_eval")}
    return {"forward": writer.write("eval", "forward")}
