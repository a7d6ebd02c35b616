"""Per-layer report of a compiled spec: a block tree of params, MACs, FLOPs, memory and receptive fields.

Everything is read from the static IR (no forward pass, no torch import), so a report of ResNet-50
takes milliseconds. `report_rows` gives the rows at a tree depth, `totals` the whole-model figures,
`render` prints either as a rich table, markdown, CSV or JSON; `compare` puts several specs in one
table. Conventions (MACs vs FLOPs, prefixes) are in CONVENTIONS and docs/report.md.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from typing import Any

from archc.codegen import inplace_nodes
from archc.ir import INPUT, Graph, Node
from archc.memory import VIEWS, buffer_bytes, dtype_bytes, training_memory
from archc.ops.base import Shape, fmt_shape, numel
from archc.receptive import Field, deepest_field, receptive_fields

FORMATS = ("table", "markdown", "csv", "json")
CONVENTIONS = (
    "MACs = multiply-accumulates of conv and linear weights, bias excluded (torchvision's published GFLOPS); "
    "FLOPs = 2 x MACs (torch.utils.flop_counter.FlopCounterMode); per-element work (norms, activations, "
    "pooling, adds, biases) is counted apart as 'other ops'; k, M, G, T are powers of 1000 (MB = 10^6 bytes); "
    "receptive fields are theoretical, in input pixels, and may exceed the input."
)


@dataclass
class Row:
    """One line of the report: a layer (node) or a block/seq (scope) with its subtree's totals."""

    name: str  # node id or scope path
    leaf: str  # the last path component, shown indented in the tree
    level: int  # tree depth: 0 for top-level layers and blocks
    kind: str  # "layer", "block" or "seq"
    op: str
    output_id: str  # the node whose tensor this row yields
    inputs: list[str]  # nodes read from outside the row
    shape: Shape
    params: int
    buffers: int
    macs: int
    other_ops: int
    activation_bytes: int  # newly allocated output memory at the report's batch and dtype
    storage: str  # "new", "in place" or "view" for layers; "" for blocks
    rf: Field | None  # receptive field and effective stride of the row's output
    train_only: bool
    collapsed: bool = False  # a block whose children are hidden by the depth limit
    layers: int = 1  # nodes summarised by the row
    connected: list[str] = field(default_factory=list)  # inputs shown: those not read from the row above

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def expanded(self) -> bool:
        return self.kind != "layer" and not self.collapsed

    def as_dict(self, total_params: int, total_macs: int) -> dict[str, Any]:
        return {
            "name": self.name, "level": self.level, "kind": self.kind, "op": self.op, "collapsed": self.collapsed,
            "layers": self.layers, "inputs": [display(i) for i in self.inputs],
            "connected_to": [display(i) for i in self.connected], "output": list(self.shape),
            "params": self.params, "trainable": self.params, "non_trainable": self.buffers,
            "params_pct": pct(self.params, total_params), "macs": self.macs, "flops": self.flops,
            "macs_pct": pct(self.macs, total_macs), "other_ops": self.other_ops,
            "activation_bytes": self.activation_bytes, "storage": self.storage,
            "receptive_field": field_size(self.rf), "effective_stride": field_stride(self.rf),
            "train_only": self.train_only,
        }


def display(node_id: str) -> str:
    return "input" if node_id == INPUT else node_id


def pct(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 2) if whole else 0.0


def field_size(f: Field | None) -> list[int | float] | None:
    return f.as_dict()["size"] if f is not None else None


def field_stride(f: Field | None) -> list[int | float] | None:
    return f.as_dict()["stride"] if f is not None else None


def si(value: float, unit: str = "") -> str:
    """Decimal prefixes, three significant digits: 1814073344 -> '1.81 G'."""
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            scaled = value / factor
            digits = 2 if scaled < 10 else 1 if scaled < 100 else 0
            return f"{scaled:.{digits}f} {prefix}{unit}"
    return f"{value:g} {unit}".rstrip() if unit else f"{value:g}"


def scope_chain(scope: str) -> list[str]:
    """'layer1.0.downsample' -> ['layer1', 'layer1.0', 'layer1.0.downsample']."""
    if not scope:
        return []
    parts = scope.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _check(depth: int | None, batch: int, dtype: str) -> None:
    if depth is not None and depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    dtype_bytes(dtype)


@dataclass
class _Context:
    """Per-graph facts every row needs, computed once."""

    graph: Graph
    batch: int
    size: int
    inplace: set[str]
    fields: dict[str, Field | None]

    def storage(self, node: Node) -> str:
        if node.op in VIEWS:
            return "view"
        return "in place" if node.id in self.inplace else "new"

    def allocation(self, node: Node) -> int:
        return numel(node.shape) * self.batch * self.size if self.storage(node) == "new" else 0


def _leaf(node: Node) -> str:
    """The name a layer has in its block: its module's attribute name, marked when a module is reused."""
    if node.module is None:
        return node.id.rsplit(".", 1)[-1]
    return node.module.rsplit(".", 1)[-1] + (" (reused)" if node.shared else "")


def _layer_row(ctx: _Context, node: Node, level: int) -> Row:
    return Row(
        name=node.id, leaf=_leaf(node), level=level, kind="layer",
        op=node.label, output_id=node.id, inputs=list(node.inputs), shape=node.shape,
        params=0 if node.shared else node.params, buffers=0 if node.shared else node.buffers, macs=node.macs,
        other_ops=node.other_ops, activation_bytes=ctx.allocation(node), storage=ctx.storage(node),
        rf=ctx.fields.get(node.id), train_only=node.id in ctx.graph.train_only_nodes,
    )


def _scope_row(ctx: _Context, path: str, level: int, members: list[Node]) -> Row:
    graph = ctx.graph
    inside = {n.id for n in members}
    outside = [i for n in members for i in n.inputs if i not in inside]
    last = members[-1]
    info = graph.scopes.get(path)
    if info is not None and info.kind == "block" and info.block:
        args = " ".join(f"{k}={v}" for k, v in info.args.items())
        op = f"{info.block} {args}".strip()
        kind = "block"
    else:
        op, kind = "seq", "seq"
    return Row(
        name=path, leaf=path.rsplit(".", 1)[-1], level=level, kind=kind, op=op, output_id=last.id,
        inputs=list(dict.fromkeys(outside)), shape=last.shape,
        params=sum(n.params for n in members if not n.shared), buffers=sum(n.buffers for n in members if not n.shared),
        macs=sum(n.macs for n in members), other_ops=sum(n.other_ops for n in members),
        activation_bytes=sum(ctx.allocation(n) for n in members), storage="", rf=ctx.fields.get(last.id),
        train_only=all(n.id in graph.train_only_nodes for n in members), layers=len(members),
    )


def report_rows(graph: Graph, depth: int | None = None, batch: int = 1, dtype: str = "float32") -> list[Row]:
    """The rows of the tree in graph order; blocks nested deeper than `depth` fold into their parent's row."""
    _check(depth, batch, dtype)
    ctx = _Context(graph, batch, dtype_bytes(dtype), inplace_nodes(graph), receptive_fields(graph))
    members: dict[str, list[Node]] = {}
    for node in graph:
        for path in scope_chain(node.scope):
            members.setdefault(path, []).append(node)
    rows: list[Row] = []
    open_chain: list[str] = []
    for node in graph:
        chain = scope_chain(node.scope)
        keep = 0
        while keep < min(len(chain), len(open_chain)) and chain[keep] == open_chain[keep]:
            keep += 1
        for level in range(keep, len(chain)):
            if depth is None or level < depth:
                row = _scope_row(ctx, chain[level], level, members[chain[level]])
                row.collapsed = depth is not None and level == depth - 1
                rows.append(row)
        open_chain = chain
        if depth is None or len(chain) < depth:
            rows.append(_layer_row(ctx, node, len(chain)))
    previous = INPUT
    for row in rows:
        row.connected = row.inputs if row.inputs != [previous] else []
        if not row.expanded:
            previous = row.output_id
        elif len(row.inputs) == 1:  # an open block: its first layer reads what the block reads
            previous = row.inputs[0]
    return rows


def totals(graph: Graph, batch: int = 1, dtype: str = "float32") -> dict[str, Any]:
    """Whole-model figures at a batch size and dtype; memory in bytes."""
    _check(None, batch, dtype)
    size = dtype_bytes(dtype)
    inplace = inplace_nodes(graph)
    fields = receptive_fields(graph)
    deepest = deepest_field(graph, fields)
    memory = training_memory(graph, batch, dtype)
    activations = sum(numel(n.shape) for n in graph if n.op not in VIEWS and n.id not in inplace) * batch * size
    return {
        "name": graph.name, "input": list(graph.input_shape), "output": list(graph.shape_of(graph.output)),
        "batch": batch, "dtype": dtype,
        "params": graph.total_params, "trainable": graph.total_params, "non_trainable": graph.total_buffers,
        "buffers": graph.total_buffers,
        "macs": graph.total_macs, "flops": 2 * graph.total_macs, "other_ops": sum(n.other_ops for n in graph),
        "macs_with_train_heads": graph.macs(include_train_only=True),
        "param_memory": graph.total_params * size + buffer_bytes(graph, dtype),
        "forward_activation_memory": activations,
        "training_memory": memory.as_dict(),
        "receptive_field": None if deepest is None else
        {"node": deepest[0], **deepest[1].as_dict()},
        "depth": graph.depth, "nodes": len(graph.nodes),
        "heads": [{"name": h.name, "node": h.node, "shape": list(graph.shape_of(h.node)), "loss_weight": h.loss_weight,
                   "train_only": h.train_only} for h in graph.heads],
    }


# rendering ---------------------------------------------------------------------------------------
COLUMNS = ("layer", "op", "connected to", "output", "params", "non-train.", "% params", "MACs", "FLOPs",
           "% MACs", "other ops", "act. mem", "RF", "stride")


def _cells(row: Row, tot: dict[str, Any], indent: str) -> list[str]:
    mark = " †" if row.train_only else ""
    name = indent * row.level + row.leaf + mark
    op = row.op + (f" ({row.layers} layers)" if row.collapsed else "")
    mem = si(row.activation_bytes, "B") if row.activation_bytes else (row.storage if row.kind == "layer" else "")
    return [
        name, op, ", ".join(display(c) for c in row.connected), fmt_shape(row.shape),
        f"{row.params:,}" if row.params else "", f"{row.buffers:,}" if row.buffers else "",
        f"{pct(row.params, tot['params']):.1f}%" if row.params else "",
        si(row.macs) if row.macs else "", si(row.flops) if row.macs else "",
        f"{pct(row.macs, tot['macs']):.1f}%" if row.macs and not row.train_only else "",
        si(row.other_ops) if row.other_ops else "", mem,
        row.rf.size_text() if row.rf else "—", row.rf.stride_text() if row.rf else "—",
    ]


def footer(tot: dict[str, Any]) -> list[str]:
    """The totals, one line each, followed by the conventions."""
    mem = tot["training_memory"]
    batch, dtype = tot["batch"], tot["dtype"]
    lines = [
        f"params: {tot['params']:,} ({si(tot['params'])}); trainable {tot['trainable']:,}; "
        f"non-trainable (buffers) {tot['non_trainable']:,}",
        f"MACs: {tot['macs']:,} ({si(tot['macs'])}); FLOPs: {tot['flops']:,} ({si(tot['flops'])}); "
        f"other ops: {si(tot['other_ops'])}",
    ]
    if tot["macs_with_train_heads"] != tot["macs"]:
        lines.append(f"MACs with the train-only heads (†): {tot['macs_with_train_heads']:,} "
                     f"({si(tot['macs_with_train_heads'])}); eval forwards skip them")
    lines += [
        f"parameter memory: {si(tot['param_memory'], 'B')} ({dtype}, buffers included); forward activations: "
        f"{si(tot['forward_activation_memory'], 'B')} at batch {batch}",
        f"training step at batch {batch}, {dtype} (estimated peak): SGD with momentum "
        f"{si(mem['peak']['sgd'], 'B')}, Adam {si(mem['peak']['adam'], 'B')}; from params {si(mem['params'], 'B')}, "
        f"grads {si(mem['grads'], 'B')}, optimizer state {si(mem['optimizer_state']['sgd'], 'B')} (SGD) / "
        f"{si(mem['optimizer_state']['adam'], 'B')} (Adam), saved activations {si(mem['saved_activations'], 'B')}",
    ]
    rf = tot["receptive_field"]
    if rf is not None:
        lines.append(f"receptive field: {dims(rf['size'])} px, effective stride {dims(rf['stride'])}, at {rf['node']}; "
                     f"depth {tot['depth']} weighted layers")
    else:
        lines.append(f"receptive field: — (no spatial input); depth {tot['depth']} weighted layers")
    for head in tot["heads"]:
        lines.append(f"head {head['name']}: {fmt_shape(tuple(head['shape']))}, loss weight {head['loss_weight']}"
                     + (", train only" if head["train_only"] else ""))
    lines.append("conventions: " + CONVENTIONS)
    return lines


def render(rows: list[Row], tot: dict[str, Any], fmt: str, width: int | None = None, color: bool = False) -> str:
    """The report as text in one of FORMATS; `width` and `color` apply to the table (a terminal's)."""
    if fmt == "json":
        return json.dumps({"totals": tot, "rows": [r.as_dict(tot["params"], tot["macs"]) for r in rows],
                           "conventions": CONVENTIONS}, indent=2) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        keys = list(rows[0].as_dict(1, 1)) if rows else ["name"]
        writer = csv.DictWriter(out, keys, lineterminator="\n")
        writer.writeheader()
        for r in rows:
            d = r.as_dict(tot["params"], tot["macs"])
            writer.writerow({k: ("x".join(map(str, v)) if isinstance(v, list) else v) for k, v in d.items()})
        return out.getvalue()
    if fmt == "markdown":
        title = f"## {tot['name']}: input {fmt_shape(tuple(tot['input']))}, batch {tot['batch']}, {tot['dtype']}\n"
        lines = [title, "| " + " | ".join(COLUMNS) + " |",
                 "| " + " | ".join("---" if i < 4 else "---:" for i in range(len(COLUMNS))) + " |"]
        for r in rows:
            cells = [c.replace("|", "\\|") for c in _cells(r, tot, "\u00a0\u00a0")]
            if r.kind != "layer":
                cells[0] = f"**{cells[0].strip()}**".join(["\u00a0\u00a0" * r.level, ""])
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        lines += [f"- {line}" for line in footer(tot)]
        return "\n".join(lines) + "\n"
    if fmt == "table":
        title = f"{tot['name']}  input {fmt_shape(tuple(tot['input']))}  batch {tot['batch']}  {tot['dtype']}"
        styles = ["bold" if r.kind != "layer" else ("dim" if r.train_only else "") for r in rows]
        body = [_cells(r, tot, "  ") for r in rows]
        return text_table(title, list(COLUMNS), body, styles, footer(tot), width, color, left=4, optional=OPTIONAL)
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


# Columns a narrow terminal drops first, in this order (the hidden ones are named under the table).
OPTIONAL = ("FLOPs", "% params", "non-train.", "other ops", "connected to", "stride", "act. mem")


def text_table(title: str, columns: list[str], body: list[list[str]], styles: list[str], notes: list[str],
               width: int | None, color: bool, left: int, optional: tuple[str, ...] = ()) -> str:
    """A fixed-width table: the first `left` columns left-aligned, numbers right-aligned, two spaces apart.

    Written by hand because rich's Table measures every cell (seconds for a 200-row ResNet-50); rich
    only styles whole lines when `color` is set. Columns in `optional` are dropped while the table is
    wider than `width`.
    """
    keep = list(range(len(columns)))
    widths = [max([len(columns[i])] + [len(row[i]) for row in body]) for i in keep]

    def total(idx: list[int]) -> int:
        return sum(widths[i] for i in idx) + 2 * (len(idx) - 1)

    hidden = []
    for name in optional:
        if width is None or total(keep) <= width:
            break
        i = columns.index(name)
        keep.remove(i)
        hidden.append(name)

    def line(cells: list[str]) -> str:
        return "  ".join(cells[i].ljust(widths[i]) if i < left else cells[i].rjust(widths[i]) for i in keep).rstrip()

    lines = [(title, "bold"), (line(columns), "bold"), ("  ".join("─" * widths[i] for i in keep), "")]
    lines += [(line(row), style) for row, style in zip(body, styles, strict=True)]
    if hidden:
        lines.append((f"(hidden to fit {width} columns: {', '.join(hidden)}; widen the terminal or use "
                      "--format markdown/csv/json)", "dim"))
    lines += [(note, "") for note in notes]
    if not color:
        return "\n".join(text for text, _ in lines) + "\n"
    from rich.console import Console
    from rich.text import Text

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=max(len(t) for t, _ in lines) + 1, soft_wrap=True)
    for text, style in lines:
        console.print(Text(text, style=style or ""))
    return buffer.getvalue()


def compare(graphs: list[Graph], batch: int = 1, dtype: str = "float32") -> list[dict[str, Any]]:
    """One row per spec for the comparison table: the static half of a model-comparison table."""
    rows = []
    for g in graphs:
        t = totals(g, batch, dtype)
        rf = t["receptive_field"]
        rows.append({
            "spec": g.name, "input": t["input"], "params": t["params"], "macs": t["macs"], "flops": t["flops"],
            "activation_memory": t["forward_activation_memory"], "training_memory_sgd": t["training_memory"]["peak"]["sgd"],
            "depth": t["depth"], "receptive_field": rf["size"] if rf else None,
            "effective_stride": rf["stride"] if rf else None,
        })
    return rows


COMPARE_COLUMNS = ("spec", "input", "params", "MACs", "FLOPs", "activations", "train mem (SGD)", "depth", "RF", "stride")


def dims(values: list[int | float] | None) -> str:
    """[435, 435] -> '435', [1, 7] -> '1x7', [10.67, 10.67] -> '10.7'; None -> '—'."""
    if values is None:
        return "—"
    return "x".join(str(v) if isinstance(v, int) else f"{v:.1f}" for v in dict.fromkeys(values))


def _compare_cells(row: dict[str, Any]) -> list[str]:
    return [row["spec"], fmt_shape(tuple(row["input"])), f"{row['params']:,}", si(row["macs"]), si(row["flops"]),
            si(row["activation_memory"], "B"), si(row["training_memory_sgd"], "B"), str(row["depth"]),
            dims(row["receptive_field"]), dims(row["effective_stride"])]


def render_compare(rows: list[dict[str, Any]], fmt: str, batch: int, dtype: str, width: int | None = None,
                   color: bool = False) -> str:
    """The comparison as text in one of FORMATS."""
    note = f"activations and training memory at batch {batch}, {dtype}; " + CONVENTIONS
    if fmt == "json":
        return json.dumps({"batch": batch, "dtype": dtype, "specs": rows, "conventions": CONVENTIONS}, indent=2) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, list(rows[0]), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("x".join(map(str, v)) if isinstance(v, list) else v) for k, v in row.items()})
        return out.getvalue()
    if fmt == "markdown":
        lines = ["| " + " | ".join(COMPARE_COLUMNS) + " |",
                 "| " + " | ".join("---" if i < 2 else "---:" for i in range(len(COMPARE_COLUMNS))) + " |"]
        lines += ["| " + " | ".join(_compare_cells(r)) + " |" for r in rows]
        return "\n".join([*lines, "", note]) + "\n"
    if fmt == "table":
        return text_table("comparison", list(COMPARE_COLUMNS), [_compare_cells(r) for r in rows], [""] * len(rows),
                          [note], width, color, left=2)
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


__all__ = ["CONVENTIONS", "FORMATS", "Row", "compare", "footer", "render", "render_compare", "report_rows", "si", "totals"]
