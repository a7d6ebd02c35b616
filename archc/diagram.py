"""Graphviz diagrams of a compiled spec: ops as nodes, tensor shapes on edges, blocks as clusters.

`to_dot` writes the DOT text itself (deterministic, no torch, no graphviz import); `render` pipes it
through the `dot` program. Blocks nested deeper than `depth` fold into one node with their totals,
and consecutive identical folded blocks (same structure and shapes, chained) become one "xN" node.
Edges from an op's first input get a high weight, so the main path stays straight and residual
skips bend around it; parallel branches share a source and so land side by side on one rank.
"""

from __future__ import annotations

import html
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from archc import ops
from archc.errors import ArchcError
from archc.ir import INPUT, Graph, Node
from archc.ops.base import fmt_shape
from archc.report import scope_chain, si

FORMATS = ("svg", "png", "jpg", "pdf", "dot")
# file suffixes and the format each names
SUFFIXES = {"svg": "svg", "png": "png", "jpg": "jpg", "jpeg": "jpg", "pdf": "pdf", "dot": "dot", "gv": "dot"}
RANKDIRS = ("TB", "LR")
DOT_TIMEOUT_S = 120
INSTALL_HINT = (
    "install graphviz to render diagrams: `apt-get install graphviz` (Debian/Ubuntu), `brew install graphviz` "
    "(macOS), `conda install graphviz`, or see https://graphviz.org/download/"
)

MERGE_GLYPHS = {"add": "+", "multiply": "×", "concat": "concat"}
BLOCK_FILL = "#e6f2e6"


class DiagramError(ArchcError):
    """Rendering failed for a reason the user can act on (dot missing, timed out, or crashed)."""


class GraphvizNotFound(DiagramError):
    """`dot` is not installed; the DOT text was written to `dot_path` instead."""

    def __init__(self, dot_path: Path) -> None:
        super().__init__(f"graphviz's `dot` was not found on PATH; wrote {dot_path} instead. {INSTALL_HINT}")
        self.dot_path = dot_path


@dataclass
class Element:
    """A box in the picture: one node, or a folded block (possibly several identical ones, `count`)."""

    key: str  # node id or scope path of the first block
    members: list[Node]
    parent: str  # the scope path of the cluster it sits in ("" at the top)
    folded: bool
    names: list[str] = field(default_factory=list)  # scope paths of the folded blocks it stands for

    @property
    def count(self) -> int:
        return len(self.names) if self.folded else 1

    @property
    def output(self) -> Node:
        return self.members[-1]


def esc(text: str) -> str:
    return html.escape(text, quote=True)


def _signature(graph: Graph, path: str, members: list[Node]) -> tuple[object, ...]:
    """What makes two folded blocks identical: kind, block and arguments, and every member's op, args and shapes."""
    info = graph.scopes.get(path)
    head = (info.kind, info.block, tuple(sorted((k, repr(v)) for k, v in info.args.items()))) if info else ("seq",)
    inside = {n.id for n in members}
    body = tuple(
        (n.id[len(path) + 1:], n.op, n.args.model_dump_json(), n.shape, tuple(graph.shape_of(i) for i in n.inputs if i not in inside))
        for n in members
    )
    return (*head, body)


def elements(graph: Graph, depth: int | None) -> tuple[list[Element], dict[str, Element]]:
    """The boxes in order and, for every node id, the box that shows it."""
    if depth is not None and depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    order: list[Element] = []
    owner: dict[str, Element] = {}
    for node in graph:
        chain = scope_chain(node.scope)
        if depth is not None and len(chain) >= depth:
            key, parent, folded = chain[depth - 1], (chain[depth - 2] if depth >= 2 else ""), True
        else:
            key, parent, folded = node.id, (chain[-1] if chain else ""), False
        last = order[-1] if order else None
        if folded and last is not None and last.folded and last.key == key:
            el = last
        else:
            el = Element(key, [], parent, folded, [key] if folded else [])
            order.append(el)
        el.members.append(node)
        owner[node.id] = el
    return _merge_repeats(graph, order, owner), owner


def _merge_repeats(graph: Graph, order: list[Element], owner: dict[str, Element]) -> list[Element]:
    """Fold runs of chained, identical folded blocks into the first one ("BasicBlock x2")."""
    users = graph.consumers
    merged: list[Element] = []
    signature: dict[int, tuple[object, ...]] = {id(el): _signature(graph, el.key, el.members) for el in order if el.folded}
    for el in order:
        prev = merged[-1] if merged else None
        if (
            prev is not None and el.folded and prev.folded and prev.parent == el.parent
            and signature[id(prev)] == signature[id(el)]
            and _reads_only(el, prev.output.id) and all(owner.get(u) is el for u in users[prev.output.id])
        ):
            signature[id(prev)] = signature[id(el)]
            prev.members.extend(el.members)
            prev.names.extend(el.names)
            for node in el.members:
                owner[node.id] = prev
            continue
        merged.append(el)
    return merged


def _reads_only(el: Element, source: str) -> bool:
    inside = {n.id for n in el.members}
    return {i for n in el.members for i in n.inputs if i not in inside} == {source}


def _node_label(node: Node) -> str:
    glyph = MERGE_GLYPHS.get(node.op)
    if glyph is not None and node.module is None:
        return f"<<b>{esc(glyph)}</b>>"
    leaf = node.module.rsplit(".", 1)[-1] if node.module else ""
    params = node.params if not node.shared else 0
    if leaf == node.label or (leaf.isdigit() and not params):
        leaf = ""  # the name adds nothing: 'relu' named relu, or an index of a parameter-free layer
    detail = " · ".join(part for part in (esc(leaf), f"{si(params)} params" if params else "") if part)
    if not detail:
        return f"<<b>{esc(node.label)}</b>>"
    return f'<<b>{esc(node.label)}</b><br/><font point-size="9" color="#555555">{detail}</font>>'


def _block_title(graph: Graph, path: str) -> str:
    info = graph.scopes.get(path)
    if info is not None and info.block:
        args = ", ".join(f"{k}={v}" for k, v in info.args.items())
        return f"{info.block}({args})" if args else info.block
    return "seq"


def _names(names: list[str]) -> str:
    if len(names) <= 2:
        return ", ".join(names)
    return f"{names[0]} … {names[-1]}"


def _folded_label(graph: Graph, el: Element) -> str:
    params = sum(n.params for n in el.members if not n.shared)
    macs = sum(n.macs for n in el.members)
    title = _block_title(graph, el.key) + (f" ×{el.count}" if el.count > 1 else "")
    stats = " · ".join(part for part in (f"{si(params)} params" if params else "", f"{si(macs)} MACs" if macs else "") if part)
    stats += " in all" if stats and el.count > 1 else ""
    lines = [f"<b>{esc(_names(el.names))}</b>", esc(title)]
    if stats:
        lines.append(f'<font point-size="9" color="#555555">{esc(stats)}</font>')
    return "<" + "<br/>".join(lines) + ">"


def _cluster_label(graph: Graph, path: str) -> str:
    return f"<<b>{esc(path)}</b> {esc(_block_title(graph, path))}>"


def to_dot(graph: Graph, depth: int | None = None, rankdir: str = "TB") -> str:
    """The DOT text of the diagram."""
    if rankdir not in RANKDIRS:
        raise ValueError(f"rankdir must be one of {', '.join(RANKDIRS)}, got {rankdir!r}")
    order, owner = elements(graph, depth)
    ids = {id(el): f"n{k}" for k, el in enumerate(order)}
    out = [
        f"digraph {_quote(graph.name)} {{",
        f'  graph [rankdir={rankdir}, fontname="Helvetica", fontsize=11, nodesep=0.3, ranksep=0.32, '
        f'ordering=out, newrank=true, labelloc=t, label=<<b>{esc(graph.name)}</b>  input {esc(fmt_shape(graph.input_shape))}>];',
        '  node [shape=box, style="rounded,filled", fillcolor="#ffffff", fontname="Helvetica", fontsize=10, '
        'margin="0.12,0.05", height=0.3, penwidth=0.8];',
        '  edge [fontname="Helvetica", fontsize=8, fontcolor="#444444", arrowsize=0.6, penwidth=0.8];',
        f'  input [label=<<b>input</b><br/>{esc(fmt_shape(graph.input_shape))}>, shape=box, style="rounded,filled", '
        'fillcolor="#fff7c2"];',
    ]
    body = _clusters(graph, order, ids)
    out.extend(body)
    out.extend(_edges(graph, order, owner, ids))
    out.append("}")
    return "\n".join(out) + "\n"


def _quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _element_line(graph: Graph, el: Element, node_id: str, indent: str) -> str:
    if el.folded:
        extra = ', peripheries=2' if el.count > 1 else ''
        return f'{indent}{node_id} [label={_folded_label(graph, el)}, fillcolor="{BLOCK_FILL}"{extra}];'
    node = el.members[0]
    if node.op in MERGE_GLYPHS and node.module is None:
        shape = "circle" if node.op != "concat" else "box"
        return (f'{indent}{node_id} [label={_node_label(node)}, shape={shape}, style="filled", fillcolor="#ffffff", '
                f'width=0.3, height=0.3, fixedsize={"true" if shape == "circle" else "false"}];')
    op = ops.get(node.op)
    fill = op.colour if op is not None else "#ffffff"  # each op's family colour, declared on its class
    return f'{indent}{node_id} [label={_node_label(node)}, fillcolor="{fill}"];'


def _clusters(graph: Graph, order: list[Element], ids: dict[int, str]) -> list[str]:
    """Elements nested in their clusters, in order; clusters open and close as the scope chain changes."""
    lines: list[str] = []
    open_chain: list[str] = []
    counter = 0
    for el in order:
        chain = scope_chain(el.parent)
        keep = 0
        while keep < min(len(chain), len(open_chain)) and chain[keep] == open_chain[keep]:
            keep += 1
        for _ in range(len(open_chain) - keep):
            lines.append("  " * len(open_chain) + "}")
            open_chain.pop()
        for path in chain[keep:]:
            indent = "  " * (len(open_chain) + 1)
            lines.append(f"{indent}subgraph cluster_{counter} {{")
            lines.append(f'{indent}  label={_cluster_label(graph, path)}; style="rounded,dashed"; color="#888888"; '
                         f'fontsize=10; labeljust=l; margin=10;')
            counter += 1
            open_chain.append(path)
        lines.append(_element_line(graph, el, ids[id(el)], "  " * (len(open_chain) + 1)))
    while open_chain:
        lines.append("  " * len(open_chain) + "}")
        open_chain.pop()
    return lines


def skip_inputs(graph: Graph) -> set[tuple[str, str]]:
    """(source, merge) pairs where the source is an ancestor of another input: residual and U-Net skips.

    Inception branches are not skips (no branch output feeds another), so they keep equal weights.
    """
    bit: dict[str, int] = {INPUT: 1}
    reach: dict[str, int] = {INPUT: 1}
    for k, node in enumerate(graph, start=1):
        bit[node.id] = 1 << k
        mask = bit[node.id]
        for i in node.inputs:
            mask |= reach[i]
        reach[node.id] = mask
    skips: set[tuple[str, str]] = set()
    for node in graph:
        if len(set(node.inputs)) < 2:
            continue
        for a in node.inputs:
            if any(b != a and reach[b] & bit[a] for b in node.inputs):
                skips.add((a, node.id))
    return skips


def _weight(graph: Graph, node: Node, k: int, skips: set[tuple[str, str]]) -> int:
    """Edge weight: heavy on the main path, light on skips and side heads, even across concat branches.

    A residual add's first input is its main path; its other inputs (projection shortcuts) pull less.
    """
    src = node.inputs[k]
    if (src, node.id) in skips or (node.id in graph.train_only_nodes and src not in graph.train_only_nodes):
        return 1
    return 2 if node.op == "add" and k > 0 else 10


def _edges(graph: Graph, order: list[Element], owner: dict[str, Element], ids: dict[int, str]) -> list[str]:
    """One edge per tensor and box it enters, heaviest first so that `ordering=out` puts the main path first."""
    def name_of(node_id: str) -> str:
        return "input" if node_id == INPUT else ids[id(owner[node_id])]

    skips = skip_inputs(graph)
    edges: dict[tuple[str, str, str], int] = {}
    for el in order:
        for node in el.members:
            for k, src in enumerate(node.inputs):
                if src != INPUT and owner[src] is el:
                    continue
                key = (name_of(src), ids[id(el)], src)
                edges[key] = max(edges.get(key, 0), _weight(graph, node, k, skips))
    labelled: set[str] = set()
    ranked = sorted(edges.items(), key=lambda item: -item[1])
    lines = [_edge_line(graph, a, b, src, weight, labelled) for (a, b, src), weight in ranked]
    outputs = [("output", graph.output, "output", False, 1.0)] + [
        (f"head_{k}", h.node, h.name, h.train_only, h.loss_weight) for k, h in enumerate(graph.heads)
    ]
    for dot_id, node_id, title, train_only, weight in outputs:
        note = ""
        if dot_id != "output":
            note = f'<br/><font point-size="9" color="#555555">loss ×{weight:g}{", train only" if train_only else ""}</font>'
        lines.append(f'  {dot_id} [label=<<b>{esc(title)}</b><br/>{esc(fmt_shape(graph.shape_of(node_id)))}{note}>, '
                     'fillcolor="#fff7c2"];')
        lines.append(f"  {name_of(node_id)} -> {dot_id} [weight={10 if dot_id == 'output' else 1}];")
    return lines


def _edge_line(graph: Graph, src_name: str, dst_name: str, src: str, weight: int, labelled: set[str]) -> str:
    attrs = [f"weight={weight}"]
    if src not in labelled:  # each tensor's shape once, on its heaviest edge
        labelled.add(src)
        attrs.append(f'label=" {esc(fmt_shape(graph.shape_of(src)))}"')
    if weight == 1:
        attrs.append('color="#777777"')
    return f"  {src_name} -> {dst_name} [{', '.join(attrs)}];"


def render(graph: Graph, path: str | Path, fmt: str = "svg", depth: int | None = None, rankdir: str = "TB",
           timeout: float = DOT_TIMEOUT_S) -> Path:
    """Write the diagram to `path` in `fmt`; raises GraphvizNotFound (after writing the .dot) without `dot`."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    path = Path(path)
    text = to_dot(graph, depth, rankdir)
    if fmt == "dot":
        path.write_text(text)
        return path
    exe = shutil.which("dot")
    if exe is None:
        dot_path = path.with_suffix(".dot")
        dot_path.write_text(text)
        raise GraphvizNotFound(dot_path)
    try:
        done = subprocess.run([exe, f"-T{fmt}", "-o", str(path)], input=text.encode(), capture_output=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise DiagramError(f"dot took longer than {timeout:g} s on {len(graph.nodes)} nodes; "
                           "try a smaller --depth or --format dot") from None
    except OSError as exc:
        raise DiagramError(f"could not run {exe}: {exc}") from None
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip().splitlines()
        raise DiagramError(f"dot failed (exit {done.returncode}): {message[-1] if message else 'no message'}")
    return path


__all__ = ["FORMATS", "RANKDIRS", "DiagramError", "GraphvizNotFound", "elements", "render", "to_dot"]
