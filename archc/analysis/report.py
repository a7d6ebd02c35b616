"""Per-layer report of a compiled spec: a block tree of params, MACs,
FLOPs, memory and receptive fields.

Everything is read from the static IR (no forward pass, no torch import), so a report of ResNet-50
takes milliseconds. `report_rows` gives the rows at a tree depth, `totals` the whole-model figures,
`render` prints either as a rich table, markdown, CSV or JSON; `compare` puts several specs in one
table. Conventions (MACs vs FLOPs, prefixes) are in CONVENTIONS and docs/report.md.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from archc.analysis.memory import buffer_bytes, dtype_bytes, is_view, training_memory
from archc.analysis.receptive import Field, deepest_field, receptive_fields
from archc.compiler.ir import INPUT, Graph, Node
from archc.ops.base import Layout, Shape, fmt_shape, layout_text, numel, shape_text

CONVENTIONS = (
    "MACs = multiply-accumulates of conv and linear weights, bias excluded (torchvision's "
    "published GFLOPS); FLOPs = 2 x MACs (torch.utils.flop_counter.FlopCounterMode); "
    "per-element work (norms, activations, pooling, adds, biases) is counted apart as "
    "'other ops'; K, M, G, T are powers of 1000 (MB = 10^6 bytes); receptive fields are "
    "theoretical, in input pixels, and may exceed the input."
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
    connected: list[str] = field(
        default_factory=list
    )  # inputs shown: those not read from the row above
    layout: Layout = None  # of the output: C×H×W, H×W×C, L×D (None: unknown)

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def expanded(self) -> bool:
        return self.kind != "layer" and not self.collapsed

    def as_dict(self, total_params: int, total_macs: int) -> dict[str, Any]:
        """Every column's datum (what CSV and JSON carry), percentages of the given totals."""
        return {
            c.name: c.value(self, {"params": total_params, "macs": total_macs}) for c in COLUMNS
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
    """The one number format of archc's output: decimal prefixes, three significant digits, no
    space: 1814073344 -> '1.81G', 417000 -> '417K', si(46758048, 'B') -> '46.8MB'."""
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= factor:
            scaled = value / factor
            digits = 2 if scaled < 10 else 1 if scaled < 100 else 0
            return f"{scaled:.{digits}f}{prefix}{unit}"
    return f"{value:g}{unit}"


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
    inplace: frozenset[str]
    fields: dict[str, Field | None]

    def storage(self, node: Node) -> str:
        if is_view(node):
            return "view"
        return "in place" if node.id in self.inplace else "new"

    def allocation(self, node: Node) -> int:
        return numel(node.shape) * self.batch * self.size if self.storage(node) == "new" else 0


def _leaf(node: Node) -> str:
    """The name a layer has in its block: the last part of its node id, the one name a node has
    everywhere (a module used again reads `relu~2`, as in the diagram and the JSON; a split's
    outputs `parts.0`, `parts.1`)."""
    prefix = f"{node.scope}." if node.scope else ""
    return node.id[len(prefix) :] if node.id.startswith(prefix) else node.id.rsplit(".", 1)[-1]


def _layer_row(ctx: _Context, node: Node, level: int) -> Row:
    return Row(
        name=node.id,
        leaf=_leaf(node),
        level=level,
        kind="layer",
        op=node.label,
        output_id=node.id,
        inputs=list(node.inputs),
        shape=node.shape,
        params=0 if node.shared else node.params,
        buffers=0 if node.shared else node.buffers,
        macs=node.macs,
        other_ops=node.other_ops,
        activation_bytes=ctx.allocation(node),
        storage=ctx.storage(node),
        rf=ctx.fields.get(node.id),
        train_only=node.id in ctx.graph.train_only_nodes,
        layout=node.layout,
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
        name=path,
        leaf=path.rsplit(".", 1)[-1],
        level=level,
        kind=kind,
        op=op,
        output_id=last.id,
        inputs=list(dict.fromkeys(outside)),
        shape=last.shape,
        params=sum(n.params for n in members if not n.shared),
        buffers=sum(n.buffers for n in members if not n.shared),
        macs=sum(n.macs for n in members),
        other_ops=sum(n.other_ops for n in members),
        activation_bytes=sum(ctx.allocation(n) for n in members),
        storage="",
        rf=ctx.fields.get(last.id),
        train_only=all(n.id in graph.train_only_nodes for n in members),
        layers=len(members),
        layout=last.layout,
    )


def report_rows(
    graph: Graph, depth: int | None = None, batch: int = 1, dtype: str = "float32"
) -> list[Row]:
    """The rows of the tree in graph order; blocks nested deeper than
    `depth` fold into their parent's row."""
    _check(depth, batch, dtype)
    ctx = _Context(graph, batch, dtype_bytes(dtype), graph.inplace_nodes, receptive_fields(graph))
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
    inplace = graph.inplace_nodes
    fields = receptive_fields(graph)
    deepest = deepest_field(graph, fields)
    memory = training_memory(graph, batch, dtype)
    activations = (
        sum(numel(n.shape) for n in graph if not is_view(n) and n.id not in inplace) * batch * size
    )
    return {
        "name": graph.name,
        "input": list(graph.input_shape),
        "output": list(graph.shape_of(graph.output)),
        "batch": batch,
        "dtype": dtype,
        "params": graph.total_params,
        "trainable": graph.total_params,
        "non_trainable": graph.total_buffers,
        "buffers": graph.total_buffers,
        "macs": graph.total_macs,
        "flops": 2 * graph.total_macs,
        "other_ops": sum(n.other_ops for n in graph),
        "macs_with_train_heads": graph.macs(include_train_only=True),
        "param_memory": graph.total_params * size + buffer_bytes(graph, dtype),
        "forward_activation_memory": activations,
        "training_memory": memory.as_dict(),
        "receptive_field": None
        if deepest is None
        else {"node": deepest[0], **deepest[1].as_dict()},
        "depth": graph.depth,
        "nodes": len(graph.nodes),
        "heads": [
            {
                "name": h.name,
                "node": h.node,
                "shape": list(graph.shape_of(h.node)),
                "loss_weight": h.loss_weight,
                "train_only": h.train_only,
            }
            for h in graph.heads
        ],
    }


# rendering ---------------------------------------------------------------------------------------
# A report is data (rows, totals) apart from its presentation: each column says once what it holds,
# what its header is and how a cell reads; each format has one renderer that draws any columns.
# Adding a column is one entry in COLUMNS.


R = TypeVar("R")  # a table's row: a Row of the layer table, a dict of the comparison


@dataclass(frozen=True)
class Column(Generic[R]):
    """One column: `name` keys it in CSV/JSON and --columns, `header` titles it in tables,
    `value` is the datum, `text` how a table shows it, `numeric` aligns it right."""

    name: str
    header: str
    value: Callable[[R, dict[str, Any]], object]
    text: Callable[[R, dict[str, Any]], str]
    numeric: bool = True


def _count(n: int) -> str:
    return f"{n:,}" if n else ""


def _layer_name(row: Row, tot: dict[str, Any]) -> str:
    """The tree's indented leaf in a terminal; renderers that collapse spaces use the full path."""
    mark = " †" if row.train_only else ""
    return ("  " * row.level + row.leaf if tot.get("_tree", True) else row.name) + mark


def _op(row: Row, tot: dict[str, Any]) -> str:
    return row.op + (f" ({row.layers} layers)" if row.collapsed else "")


def _memory(row: Row, tot: dict[str, Any]) -> str:
    if row.activation_bytes:
        return si(row.activation_bytes, "B")
    return row.storage if row.kind == "layer" else ""


COLUMNS: tuple[Column[Row], ...] = (
    Column("name", "layer", lambda r, t: r.name, _layer_name, numeric=False),
    Column("level", "level", lambda r, t: r.level, lambda r, t: str(r.level)),
    Column("kind", "kind", lambda r, t: r.kind, lambda r, t: r.kind, numeric=False),
    Column("op", "op", lambda r, t: r.op, _op, numeric=False),
    Column(
        "collapsed",
        "folded",
        lambda r, t: r.collapsed,
        lambda r, t: "yes" if r.collapsed else "",
        numeric=False,
    ),
    Column("layers", "layers", lambda r, t: r.layers, lambda r, t: str(r.layers)),
    Column(
        "inputs",
        "inputs",
        lambda r, t: [display(i) for i in r.inputs],
        lambda r, t: ", ".join(display(i) for i in r.inputs),
        numeric=False,
    ),
    Column(
        "connected_to",
        "connected to",
        lambda r, t: [display(i) for i in r.connected],
        lambda r, t: ", ".join(display(i) for i in r.connected),
        numeric=False,
    ),
    Column(
        "output", "output", lambda r, t: list(r.shape), lambda r, t: shape_text(r.shape, r.layout)
    ),
    Column(
        "layout",
        "layout",
        lambda r, t: layout_text(r.layout) or None,
        lambda r, t: layout_text(r.layout),
        numeric=False,
    ),
    Column("params", "params", lambda r, t: r.params, lambda r, t: _count(r.params)),
    Column("trainable", "trainable", lambda r, t: r.params, lambda r, t: _count(r.params)),
    Column("non_trainable", "non-train.", lambda r, t: r.buffers, lambda r, t: _count(r.buffers)),
    Column(
        "params_pct",
        "% params",
        lambda r, t: pct(r.params, t["params"]),
        lambda r, t: f"{pct(r.params, t['params']):.1f}%" if r.params else "",
    ),
    Column("macs", "MACs", lambda r, t: r.macs, lambda r, t: si(r.macs) if r.macs else ""),
    Column("flops", "FLOPs", lambda r, t: r.flops, lambda r, t: si(r.flops) if r.macs else ""),
    Column(
        "macs_pct",
        "% MACs",
        lambda r, t: pct(r.macs, t["macs"]),
        lambda r, t: f"{pct(r.macs, t['macs']):.1f}%" if r.macs and not r.train_only else "",
    ),
    Column(
        "other_ops",
        "other ops",
        lambda r, t: r.other_ops,
        lambda r, t: si(r.other_ops) if r.other_ops else "",
    ),
    Column("activation_bytes", "act. mem", lambda r, t: r.activation_bytes, _memory),
    Column("storage", "storage", lambda r, t: r.storage, lambda r, t: r.storage, numeric=False),
    Column(
        "receptive_field",
        "RF",
        lambda r, t: field_size(r.rf),
        lambda r, t: r.rf.size_text() if r.rf else "—",
    ),
    Column(
        "effective_stride",
        "stride",
        lambda r, t: field_stride(r.rf),
        lambda r, t: r.rf.stride_text() if r.rf else "—",
    ),
    Column(
        "train_only",
        "train only",
        lambda r, t: r.train_only,
        lambda r, t: "yes" if r.train_only else "",
        numeric=False,
    ),
)
COLUMN_NAMES = tuple(c.name for c in COLUMNS)
# What tables show unless --columns says otherwise; CSV and JSON carry every column.
DEFAULT_COLUMNS = (
    "name",
    "op",
    "connected_to",
    "output",
    "params",
    "non_trainable",
    "params_pct",
    "macs",
    "flops",
    "macs_pct",
    "other_ops",
    "activation_bytes",
    "receptive_field",
    "effective_stride",
)
# Columns a narrow terminal drops first, in this order (the hidden ones are named under the table).
OPTIONAL = (
    "flops",
    "params_pct",
    "non_trainable",
    "other_ops",
    "connected_to",
    "effective_stride",
    "activation_bytes",
)
CONVENTIONS_NOTE = "MACs count conv and linear weights; see docs/report.md for every convention"


def columns(names: Sequence[str] | None = None) -> list[Column[Row]]:
    """The columns called `names` (None: the default table), in the order given."""
    by_name = {c.name: c for c in COLUMNS}
    unknown = [n for n in names or () if n not in by_name]
    if unknown:
        from archc.errors import ArchcError, did_you_mean

        raise ArchcError(
            f"unknown column '{unknown[0]}'{did_you_mean(unknown[0], by_name)}; "
            f"columns: {', '.join(by_name)}"
        )
    return [by_name[n] for n in (names or DEFAULT_COLUMNS)]


@dataclass
class Table(Generic[R]):
    """What every renderer draws: a title, columns over rows, emphasis per row, notes below, and the
    JSON document (rows plus whatever the table's kind adds)."""

    title: str
    columns: list[Column[R]]
    rows: list[R]
    context: dict[str, Any]
    strong: list[bool]  # blocks in bold
    faint: list[bool]  # train-only rows dimmed
    notes: list[str]
    document: dict[str, Any]
    rows_key: str = "rows"
    optional: tuple[str, ...] = ()
    width: int | None = None
    color: bool = False

    def cells(self, tree: bool = True) -> list[list[str]]:
        context = {**self.context, "_tree": tree}
        return [[c.text(row, context) for c in self.columns] for row in self.rows]

    def records(self) -> list[dict[str, Any]]:
        return [{c.name: c.value(row, self.context) for c in self.columns} for row in self.rows]


def render_json(table: Table) -> str:
    return json.dumps({**table.document, table.rows_key: table.records()}, indent=2) + "\n"


def render_csv(table: Table) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, [c.name for c in table.columns], lineterminator="\n")
    writer.writeheader()
    for record in table.records():
        writer.writerow(
            {k: ("x".join(map(str, v)) if isinstance(v, list) else v) for k, v in record.items()}
        )
    return out.getvalue()


def render_markdown(table: Table) -> str:
    """A GitHub table; layer names are full paths, since markdown collapses indentation."""
    lines = [
        f"## {table.title}\n",
        "| " + " | ".join(c.header for c in table.columns) + " |",
        "| " + " | ".join("---:" if c.numeric else "---" for c in table.columns) + " |",
    ]
    for cells, strong in zip(table.cells(tree=False), table.strong, strict=True):
        cells = [cell.replace("|", "\\|") for cell in cells]
        if strong and cells:
            cells[0] = f"**{cells[0]}**"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join([*lines, "", *(f"- {note}" for note in table.notes)]) + "\n"


def render_html(table: Table) -> str:
    """An HTML table (no page around it); block rows carry class="block", numbers class="num"."""
    from html import escape

    head = "".join(f"<th>{escape(c.header)}</th>" for c in table.columns)
    body = []
    for cells, strong in zip(table.cells(tree=False), table.strong, strict=True):
        tds = "".join(
            f'<td class="num">{escape(v)}</td>' if c.numeric else f"<td>{escape(v)}</td>"
            for c, v in zip(table.columns, cells, strict=True)
        )
        body.append(('<tr class="block">' if strong else "<tr>") + tds + "</tr>")
    notes = "".join(f'<p class="note">{escape(note)}</p>' for note in table.notes)
    return (
        f'<table class="layers"><caption>{escape(table.title)}</caption>'
        f"<thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>{notes}\n"
    )


def render_table(table: Table) -> str:
    """A fixed-width table for a terminal: text left, numbers right, two spaces apart.

    Written by hand because rich's Table measures every cell (seconds for a 200-row ResNet-50); rich
    only styles whole lines when `color` is set. Columns in `optional` are dropped while
    the table is wider than `width`.
    """
    cols, body = table.columns, table.cells()
    keep = list(range(len(cols)))
    widths = [max([len(cols[i].header)] + [len(row[i]) for row in body]) for i in keep]

    def total(idx: list[int]) -> int:
        return sum(widths[i] for i in idx) + 2 * (len(idx) - 1)

    hidden = []
    names = [c.name for c in cols]
    for name in table.optional:
        if table.width is None or total(keep) <= table.width:
            break
        if name in names and names.index(name) in keep:
            keep.remove(names.index(name))
            hidden.append(cols[names.index(name)].header)

    def line(cells: list[str]) -> str:
        return "  ".join(
            cells[i].rjust(widths[i]) if cols[i].numeric else cells[i].ljust(widths[i])
            for i in keep
        ).rstrip()

    styles = [
        "bold" if s else "dim" if f else "" for s, f in zip(table.strong, table.faint, strict=True)
    ]
    lines = [
        (table.title, "bold"),
        (line([c.header for c in cols]), "bold"),
        ("  ".join("─" * widths[i] for i in keep), ""),
    ]
    lines += [(line(row), style) for row, style in zip(body, styles, strict=True)]
    if hidden:
        lines.append(
            (
                f"(hidden to fit {table.width} columns: {', '.join(hidden)}; widen "
                "the terminal, pick --columns or use --format markdown/csv/json)",
                "dim",
            )
        )
    lines += [(note, "") for note in table.notes]
    if not table.color:
        return "\n".join(text for text, _ in lines) + "\n"
    from rich.console import Console
    from rich.text import Text

    buffer = io.StringIO()
    console = Console(
        file=buffer, force_terminal=True, width=max(len(t) for t, _ in lines) + 1, soft_wrap=True
    )
    for text, style in lines:
        console.print(Text(text, style=style or ""))
    return buffer.getvalue()


RENDERERS: dict[str, Callable[[Table], str]] = {
    "table": render_table,
    "markdown": render_markdown,
    "csv": render_csv,
    "json": render_json,
    "html": render_html,
}
FORMATS = tuple(RENDERERS)


def footer(tot: dict[str, Any]) -> list[str]:
    """The totals, one line each."""
    mem = tot["training_memory"]
    batch, dtype = tot["batch"], tot["dtype"]
    lines = [
        f"params: {tot['params']:,} ({si(tot['params'])}); trainable {tot['trainable']:,}; "
        f"non-trainable (buffers) {tot['non_trainable']:,}",
        f"MACs: {tot['macs']:,} ({si(tot['macs'])}); FLOPs: {tot['flops']:,} ({si(tot['flops'])}); "
        f"other ops: {si(tot['other_ops'])}",
    ]
    if tot["macs_with_train_heads"] != tot["macs"]:
        lines.append(
            f"MACs with the train-only heads (†): {tot['macs_with_train_heads']:,} "
            f"({si(tot['macs_with_train_heads'])}); eval forwards skip them"
        )
    lines += [
        f"parameter memory: {si(tot['param_memory'], 'B')} ({dtype}, buffers included); "
        f"forward activations: {si(tot['forward_activation_memory'], 'B')} at batch {batch}",
        f"training step at batch {batch}, {dtype} (estimated peak): SGD with momentum "
        f"{si(mem['peak']['sgd'], 'B')}, Adam {si(mem['peak']['adam'], 'B')}; from "
        f"params {si(mem['params'], 'B')}, grads {si(mem['grads'], 'B')}, optimizer "
        f"state {si(mem['optimizer_state']['sgd'], 'B')} (SGD) / "
        f"{si(mem['optimizer_state']['adam'], 'B')} (Adam), saved activations "
        f"{si(mem['saved_activations'], 'B')}",
    ]
    rf = tot["receptive_field"]
    if rf is not None:
        lines.append(
            f"receptive field: {dims(rf['size'])} px, effective stride "
            f"{dims(rf['stride'])}, at {rf['node']}; depth {tot['depth']} weighted layers"
        )
    else:
        why = (
            "no spatial input"
            if len(tot["input"]) < 2
            else "unknown past a layer that reshapes the map"
        )
        lines.append(f"receptive field: — ({why}); depth {tot['depth']} weighted layers")
    for head in tot["heads"]:
        lines.append(
            (
                f"head {head['name']}: {fmt_shape(tuple(head['shape']))}, "
                f"loss weight {head['loss_weight']}"
            )
            + (", train only" if head["train_only"] else "")
        )
    lines.append(CONVENTIONS_NOTE)
    return lines


def layer_table(
    rows: list[Row],
    tot: dict[str, Any],
    names: Sequence[str] | None = None,
    *,
    fmt: str = "table",
    width: int | None = None,
    color: bool = False,
) -> Table:
    """The per-layer table of a report: the default columns in tables, all of them in CSV/JSON."""
    chosen = columns(
        names if names or fmt in ("table", "markdown", "html") else [c.name for c in COLUMNS]
    )
    title = (
        f"{tot['name']}: input {fmt_shape(tuple(tot['input']))}, "
        f"batch {tot['batch']}, {tot['dtype']}"
    )
    return Table(
        title,
        chosen,
        rows,
        tot,
        [r.kind != "layer" for r in rows],
        [r.train_only for r in rows],
        footer(tot),
        {"totals": tot, "conventions": CONVENTIONS},
        optional=OPTIONAL,
        width=width,
        color=color,
    )


def render(
    rows: list[Row],
    tot: dict[str, Any],
    fmt: str,
    width: int | None = None,
    color: bool = False,
    columns: Sequence[str] | None = None,
) -> str:
    """The report in one of FORMATS; `width` and `color` apply to the terminal table, `columns`
    picks and orders the columns (default: the usual table; CSV and JSON carry every column)."""
    if fmt not in RENDERERS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return RENDERERS[fmt](layer_table(rows, tot, columns, fmt=fmt, width=width, color=color))


def compare(graphs: list[Graph], batch: int = 1, dtype: str = "float32") -> list[dict[str, Any]]:
    """One row per spec for the comparison table: the static half of a model-comparison table."""
    rows = []
    for g in graphs:
        t = totals(g, batch, dtype)
        rf = t["receptive_field"]
        rows.append(
            {
                "spec": g.name,
                "input": t["input"],
                "params": t["params"],
                "macs": t["macs"],
                "flops": t["flops"],
                "activation_memory": t["forward_activation_memory"],
                "training_memory_sgd": t["training_memory"]["peak"]["sgd"],
                "depth": t["depth"],
                "receptive_field": rf["size"] if rf else None,
                "effective_stride": rf["stride"] if rf else None,
            }
        )
    return rows


def dims(values: list[int | float] | None) -> str:
    """[435, 435] -> '435', [1, 7] -> '1x7', [10.67, 10.67] -> '10.7'; None -> '—'."""
    if values is None:
        return "—"
    return "x".join(str(v) if isinstance(v, int) else f"{v:.1f}" for v in dict.fromkeys(values))


def _key(name: str) -> Callable[[dict[str, Any], dict[str, Any]], object]:
    return lambda row, _: row[name]


COMPARE_COLUMNS: tuple[Column[dict[str, Any]], ...] = (
    Column("spec", "spec", _key("spec"), lambda r, t: r["spec"], numeric=False),
    Column(
        "input", "input", _key("input"), lambda r, t: fmt_shape(tuple(r["input"])), numeric=False
    ),
    Column("params", "params", _key("params"), lambda r, t: f"{r['params']:,}"),
    Column("macs", "MACs", _key("macs"), lambda r, t: si(r["macs"])),
    Column("flops", "FLOPs", _key("flops"), lambda r, t: si(r["flops"])),
    Column(
        "activation_memory",
        "activations",
        _key("activation_memory"),
        lambda r, t: si(r["activation_memory"], "B"),
    ),
    Column(
        "training_memory_sgd",
        "train mem (SGD)",
        _key("training_memory_sgd"),
        lambda r, t: si(r["training_memory_sgd"], "B"),
    ),
    Column("depth", "depth", _key("depth"), lambda r, t: str(r["depth"])),
    Column(
        "receptive_field", "RF", _key("receptive_field"), lambda r, t: dims(r["receptive_field"])
    ),
    Column(
        "effective_stride",
        "stride",
        _key("effective_stride"),
        lambda r, t: dims(r["effective_stride"]),
    ),
)


def render_compare(
    rows: list[dict[str, Any]],
    fmt: str,
    batch: int,
    dtype: str,
    width: int | None = None,
    color: bool = False,
) -> str:
    """The comparison in one of FORMATS."""
    if fmt not in RENDERERS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    note = f"activations and training memory at batch {batch}, {dtype}; {CONVENTIONS_NOTE}"
    table = Table(
        "comparison",
        list(COMPARE_COLUMNS),
        rows,
        {},
        [False] * len(rows),
        [False] * len(rows),
        [note],
        {"batch": batch, "dtype": dtype, "conventions": CONVENTIONS},
        rows_key="specs",
        width=width,
        color=color,
    )
    return RENDERERS[fmt](table)


__all__ = [
    "COLUMNS",
    "CONVENTIONS",
    "FORMATS",
    "Column",
    "Row",
    "Table",
    "columns",
    "compare",
    "footer",
    "layer_table",
    "render",
    "render_compare",
    "report_rows",
    "si",
    "totals",
]
