"""Graphviz diagrams of a compiled spec: ops as nodes, tensor shapes on edges, blocks as clusters.

`diagram` builds the graph with the graphviz package (deterministic, no torch); `render` runs the
`dot` program on its source under a timeout (the package's own pipe() has none, and a spec is
untrusted input). Blocks nested deeper than `depth` fold into one node with their totals, and
consecutive identical folded blocks (same structure and shapes, chained) become one "xN" node;
`fit_depth` picks the deepest fold that keeps a diagram readable.
Edges from an op's first input get a high weight, so the main path stays straight and residual
skips bend around it; parallel branches share a source and so land side by side on one rank.
"""

from __future__ import annotations

import html
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import graphviz

from archc import ops
from archc.analysis.report import scope_chain, si
from archc.compiler.ir import INPUT, Graph, Node
from archc.errors import ArchcError
from archc.ops.base import fmt_shape, shape_text

FORMATS = ("svg", "png", "jpg", "pdf", "dot")
# file suffixes and the format each names
SUFFIXES = {
    "svg": "svg",
    "png": "png",
    "jpg": "jpg",
    "jpeg": "jpg",
    "pdf": "pdf",
    "dot": "dot",
    "gv": "dot",
}
RANKDIRS = ("TB", "LR")
DOT_TIMEOUT_S = 120
# The most boxes `fit_depth` lets a diagram have: about two screens of a top-to-bottom layout.
MAX_BOXES = 60
INSTALL_HINT = (
    "install graphviz to render diagrams: `apt-get install graphviz` (Debian/Ubuntu), `brew "
    "install graphviz` (macOS), `conda install graphviz`, or see https://graphviz.org/download/"
)

MERGE_GLYPHS = {"add": "+", "multiply": "×", "concat": "concat"}
BLOCK_FILL = "#e6f2e6"


class DiagramError(ArchcError):
    """Rendering failed for a reason the user can act on (dot missing, timed out, or crashed)."""


class GraphvizNotFound(DiagramError):
    """`dot` is not installed; the DOT text was written to `dot_path` instead."""

    def __init__(self, dot_path: Path) -> None:
        super().__init__(
            f"graphviz's `dot` was not found on PATH; wrote {dot_path} instead. {INSTALL_HINT}"
        )
        self.dot_path = dot_path


@dataclass
class Element:
    """A box in the picture: one node, or a folded block (possibly
    several identical ones, `count`)."""

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
    """What makes two folded blocks identical: kind, block and arguments, and
    every member's op, args and shapes."""
    info = graph.scopes.get(path)
    head = (
        (info.kind, info.block, tuple(sorted((k, repr(v)) for k, v in info.args.items())))
        if info
        else ("seq",)
    )
    inside = {n.id for n in members}
    body = tuple(
        (
            n.id[len(path) + 1 :],
            n.op,
            n.args.model_dump_json(),
            n.shape,
            tuple(graph.shape_of(i) for i in n.inputs if i not in inside),
        )
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
    signature: dict[int, tuple[object, ...]] = {
        id(el): _signature(graph, el.key, el.members) for el in order if el.folded
    }
    for el in order:
        prev = merged[-1] if merged else None
        if (
            prev is not None
            and el.folded
            and prev.folded
            and prev.parent == el.parent
            and signature[id(prev)] == signature[id(el)]
            and _reads_only(el, prev.output.id)
            and all(owner.get(u) is el for u in users[prev.output.id])
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
    detail = " · ".join(
        part for part in (esc(leaf), f"{si(params)} params" if params else "") if part
    )
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
    stats = " · ".join(
        part
        for part in (f"{si(params)} params" if params else "", f"{si(macs)} MACs" if macs else "")
        if part
    )
    stats += " in all" if stats and el.count > 1 else ""
    lines = [f"<b>{esc(_names(el.names))}</b>", esc(title)]
    if stats:
        lines.append(f'<font point-size="9" color="#555555">{esc(stats)}</font>')
    return "<" + "<br/>".join(lines) + ">"


def _cluster_label(graph: Graph, path: str) -> str:
    return f"<<b>{esc(path)}</b> {esc(_block_title(graph, path))}>"


def fit_depth(graph: Graph, max_boxes: int = MAX_BOXES) -> int | None:
    """The deepest fold (None: every layer) whose diagram has at most `max_boxes` boxes; depth 1
    when even that is more. Full-depth ResNet-50 is 175 boxes (14121 px tall); at depth 2 it is
    22, one stage per row of blocks."""
    deepest = max((len(scope_chain(n.scope)) for n in graph), default=0)
    for depth in [None, *range(deepest, 0, -1)]:
        order, _ = elements(graph, depth)
        if len(order) <= max_boxes:
            return depth
    return 1


def diagram(
    graph: Graph, depth: int | None = None, rankdir: str = "TB", dpi: int | None = None
) -> graphviz.Digraph:
    """The diagram as a graphviz.Digraph: boxes nested in block
    clusters, edges labelled with shapes."""
    if rankdir not in RANKDIRS:
        raise ValueError(f"rankdir must be one of {', '.join(RANKDIRS)}, got {rankdir!r}")
    if dpi is not None and dpi < 1:
        raise ValueError(f"dpi must be positive, got {dpi}")
    order, owner = elements(graph, depth)
    ids = {id(el): f"n{k}" for k, el in enumerate(order)}
    attrs = {
        "rankdir": rankdir,
        "fontname": "Helvetica",
        "fontsize": "11",
        "nodesep": "0.3",
        "ranksep": "0.32",
        "ordering": "out",
        "newrank": "true",
        "labelloc": "t",
        "label": f"<<b>{esc(graph.name)}</b>  input {esc(fmt_shape(graph.input_shape))}>",
    }
    if dpi is not None:
        attrs["dpi"] = str(dpi)
    dot = graphviz.Digraph(
        graph.name,
        graph_attr=attrs,
        node_attr={
            "shape": "box",
            "style": "rounded,filled",
            "fillcolor": "#ffffff",
            "fontname": "Helvetica",
            "fontsize": "10",
            "margin": "0.12,0.05",
            "height": "0.3",
            "penwidth": "0.8",
        },
        edge_attr={
            "fontname": "Helvetica",
            "fontsize": "8",
            "fontcolor": "#444444",
            "arrowsize": "0.6",
            "penwidth": "0.8",
        },
    )
    dot.node(
        "input",
        label=f"<<b>input</b><br/>{esc(shape_text(graph.input_shape, graph.input_layout))}>",
        fillcolor="#fff7c2",
    )
    _clusters(dot, graph, order, ids)
    _edges(dot, graph, order, owner, ids)
    return dot


def to_dot(
    graph: Graph, depth: int | None = None, rankdir: str = "TB", dpi: int | None = None
) -> str:
    """The DOT source of the diagram."""
    return str(diagram(graph, depth, rankdir, dpi).source)


def _add_element(target: graphviz.Digraph, graph: Graph, el: Element, node_id: str) -> None:
    if el.folded:
        extra = {"peripheries": "2"} if el.count > 1 else {}
        target.node(node_id, label=_folded_label(graph, el), fillcolor=BLOCK_FILL, **extra)
        return
    node = el.members[0]
    if node.op in MERGE_GLYPHS and node.module is None:
        shape = "circle" if node.op != "concat" else "box"
        target.node(
            node_id,
            label=_node_label(node),
            shape=shape,
            style="filled",
            fillcolor="#ffffff",
            width="0.3",
            height="0.3",
            fixedsize="true" if shape == "circle" else "false",
        )
        return
    op = ops.get(node.op)
    fill = (
        op.colour if op is not None else "#ffffff"
    )  # each op's family colour, declared on its class
    target.node(node_id, label=_node_label(node), fillcolor=fill)


def _clusters(
    dot: graphviz.Digraph, graph: Graph, order: list[Element], ids: dict[int, str]
) -> None:
    """Elements nested in their clusters, in order; a cluster is
    attached to its parent when it closes."""
    stack: list[tuple[str, graphviz.Digraph]] = []
    counter = 0

    def close() -> None:
        _, child = stack.pop()
        (stack[-1][1] if stack else dot).subgraph(child)

    for el in order:
        chain = scope_chain(el.parent)
        keep = 0
        while keep < min(len(chain), len(stack)) and chain[keep] == stack[keep][0]:
            keep += 1
        while len(stack) > keep:
            close()
        for path in chain[keep:]:
            cluster = graphviz.Digraph(f"cluster_{counter}")
            cluster.attr(
                label=_cluster_label(graph, path),
                style="rounded,dashed",
                color="#888888",
                fontsize="10",
                labeljust="l",
                margin="10",
            )
            counter += 1
            stack.append((path, cluster))
        _add_element(stack[-1][1] if stack else dot, graph, el, ids[id(el)])
    while stack:
        close()


def skip_inputs(graph: Graph) -> set[tuple[str, str]]:
    """(source, merge) pairs where the source is an ancestor of another
    input: residual and U-Net skips.

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
    """Edge weight: heavy on the main path, light on skips and side
    heads, even across concat branches.

    A residual add's first input is its main path; its other inputs
    (projection shortcuts) pull less.
    """
    src = node.inputs[k]
    if (src, node.id) in skips or (
        node.id in graph.train_only_nodes and src not in graph.train_only_nodes
    ):
        return 1
    return 2 if node.op == "add" and k > 0 else 10


def _edges(
    dot: graphviz.Digraph,
    graph: Graph,
    order: list[Element],
    owner: dict[str, Element],
    ids: dict[int, str],
) -> None:
    """One edge per tensor and box it enters, heaviest first so that
    `ordering=out` puts the main path first."""

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
    for (tail, head, src), weight in sorted(edges.items(), key=lambda item: -item[1]):
        attrs = {"weight": str(weight)}
        if src not in labelled:  # each tensor's shape once, on its heaviest edge
            labelled.add(src)
            attrs["label"] = f" {shape_text(graph.shape_of(src), graph.layout_of(src))}"
        if weight == 1:
            attrs["color"] = "#777777"
        dot.edge(tail, head, **attrs)
    outputs = [("output", graph.output, "output", False, 1.0)] + [
        (f"head_{k}", h.node, h.name, h.train_only, h.loss_weight)
        for k, h in enumerate(graph.heads)
    ]
    for dot_id, node_id, title, train_only, loss_weight in outputs:
        note = ""
        if dot_id != "output":
            note = (
                '<br/><font point-size="9" color="#555555">loss '
                f"×{loss_weight:g}{', train only' if train_only else ''}</font>"
            )
        shape = shape_text(graph.shape_of(node_id), graph.layout_of(node_id))
        dot.node(dot_id, label=f"<<b>{esc(title)}</b><br/>{esc(shape)}{note}>", fillcolor="#fff7c2")
        dot.edge(name_of(node_id), dot_id, weight="10" if dot_id == "output" else "1")


def render(
    graph: Graph,
    path: str | Path,
    fmt: str = "svg",
    depth: int | None = None,
    rankdir: str = "TB",
    timeout: float = DOT_TIMEOUT_S,
    dpi: int | None = None,
) -> Path:
    """Write the diagram to `path` in `fmt`; raises GraphvizNotFound (after
    writing the .dot) without `dot`."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    path = Path(path)
    text = to_dot(graph, depth, rankdir, dpi)
    if fmt == "dot":
        path.write_text(text)
        return path
    exe = shutil.which("dot")
    if exe is None:
        dot_path = path.with_suffix(".dot")
        dot_path.write_text(text)
        raise GraphvizNotFound(dot_path)
    try:
        done = subprocess.run(
            [exe, f"-T{fmt}", "-o", str(path)],
            input=text.encode(),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise DiagramError(
            f"dot took longer than {timeout:g} s on {len(graph.nodes)} nodes; "
            "try a smaller --depth or --format dot"
        ) from None
    except OSError as exc:
        raise DiagramError(f"could not run {exe}: {exc}") from None
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip().splitlines()
        raise DiagramError(
            f"dot failed (exit {done.returncode}): {message[-1] if message else 'no message'}"
        )
    return path


__all__ = [
    "FORMATS",
    "RANKDIRS",
    "DiagramError",
    "GraphvizNotFound",
    "diagram",
    "elements",
    "fit_depth",
    "render",
    "to_dot",
]
