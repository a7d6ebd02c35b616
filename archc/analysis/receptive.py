"""Receptive field and effective stride of every node, statically, from the ops' sliding windows.

Per spatial dim of the input, in input pixels: a window of kernel k, stride s and dilation d grows
the field by (k - 1) * d * (stride so far) and multiplies the stride by s. Merges take the largest
field of their inputs. Ops that declare no window (`Op.receptive_window` returns None) are
pointwise in space when they keep the spatial size, and see the whole input when they drop the
spatial dims (flatten before a linear layer); any other reshaping leaves the field unknown (None)
rather than guessed. Fields are theoretical: they may exceed the input (padding is ignored).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from archc import ops
from archc.compiler.ir import INPUT, Graph, Node
from archc.ops.base import Window


@dataclass(frozen=True)
class Field:
    """The input region one output position depends on (`size`) and the step
    between neighbours (`stride`)."""

    size: tuple[Fraction, ...]
    stride: tuple[Fraction, ...]

    @property
    def extent(self) -> Fraction:
        """Input pixels covered, for picking the largest field (the product of the sizes)."""
        out = Fraction(1)
        for v in self.size:
            out *= v
        return out

    def size_text(self) -> str:
        return fmt_dims(self.size)

    def stride_text(self) -> str:
        return fmt_dims(self.stride)

    def as_dict(self) -> dict[str, list[float | int]]:
        return {"size": [plain(v) for v in self.size], "stride": [plain(v) for v in self.stride]}


def plain(value: Fraction) -> int | float:
    """An int when whole (JSON-friendly), else a float."""
    return int(value) if value.denominator == 1 else float(value)


def fmt_dims(values: tuple[Fraction, ...]) -> str:
    """(11, 11) -> '11', (1, 7) -> '1x7', (7/2,) -> '3.5'."""
    if not values:
        return ""
    texts = [str(int(v)) if v.denominator == 1 else f"{float(v):.1f}" for v in values]
    return texts[0] if len(set(texts)) == 1 else "x".join(texts)


def _apply(field: Field, window: Window) -> Field | None:
    if len(window.kernel) != len(field.size):
        return None
    size = tuple(
        r + (k - 1) * d * j
        for r, j, k, d in zip(field.size, field.stride, window.kernel, window.dilation, strict=True)
    )
    stride = tuple(j * s for j, s in zip(field.stride, window.stride, strict=True))
    return Field(size, stride)


def _merge(fields: list[Field], steps: list[Field]) -> Field | None:
    """The largest field of the inputs, stepping as `steps` (the inputs the output's positions
    follow) do."""
    if len({len(f.size) for f in fields}) != 1:
        return None
    dims = range(len(fields[0].size))
    return Field(
        tuple(max(f.size[i] for f in fields) for i in dims),
        tuple(max(f.stride[i] for f in steps) for i in dims),
    )


def node_field(graph: Graph, node: Node, inputs: list[Field | None]) -> Field | None:
    """One node's field from its inputs' fields, by the rules in the module docstring."""
    if any(f is None for f in inputs) or not inputs:
        return None
    fields = [f for f in inputs if f is not None]
    in_shapes = [graph.shape_of(i) for i in node.inputs]
    # an input broadcast over the output's positions (an SE gate's 1x1 map) adds its field, not its
    # step: the output steps as the inputs of its own size do
    full = [f for f, shape in zip(fields, in_shapes, strict=True) if shape[1:] == node.shape[1:]]
    merged = _merge(fields, full or fields)
    if merged is None:
        return None
    op = ops.get(node.op)
    window = op.receptive_window(node.args, in_shapes, node.shape) if op is not None else None
    if window is not None:
        return _apply(merged, window)
    out_spatial = node.shape[1:]
    if all(
        len(shape) == len(node.shape)
        and all(a in (b, 1) for a, b in zip(shape[1:], out_spatial, strict=True))
        for shape in in_shapes
    ):
        return merged  # pointwise in space (an input of size 1, like an SE gate, broadcasts)
    in_spatial = in_shapes[0][1:]
    if len(node.shape) <= 1 and len(in_spatial) == len(
        merged.size
    ):  # the spatial dims fold into features
        sizes = tuple(Fraction(n) for n in in_spatial)
        return _apply(merged, Window(tuple(in_spatial), sizes, (1,) * len(sizes)))
    return None


def receptive_fields(graph: Graph) -> dict[str, Field | None]:
    """node id -> its field (None where unknown, or for inputs without spatial dims)."""
    spatial = len(graph.input_shape) - 1
    fields: dict[str, Field | None] = {
        INPUT: Field((Fraction(1),) * spatial, (Fraction(1),) * spatial) if spatial >= 1 else None
    }
    for node in graph:
        fields[node.id] = node_field(graph, node, [fields[i] for i in node.inputs])
    return fields


def deepest_field(graph: Graph, fields: dict[str, Field | None]) -> tuple[str, Field] | None:
    """The largest field of a feature map still larger than 1x1 on the main path, with its node.

    That is the receptive field a network's head sees before global pooling: the figure to compare.
    None when some feature map on the main path has an unknown field.
    """
    best: tuple[str, Field] | None = None
    skip = graph.train_only_nodes
    for node in graph:
        if node.id in skip or len(node.shape) < 2 or all(n == 1 for n in node.shape[1:]):
            continue
        field = fields.get(node.id)
        if field is None:
            return None  # unknown on the main path: the largest known field would understate it
        if best is None or field.extent >= best[1].extent:  # ties: the later node, a block's output
            best = (node.id, field)
    return best


__all__ = ["Field", "deepest_field", "fmt_dims", "node_field", "plain", "receptive_fields"]
