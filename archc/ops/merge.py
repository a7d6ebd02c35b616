"""Merges of several inputs: residual add, channel concat, gating multiply.

Each is written either with branches (`add: [[...], [...]]`, the input flows into each branch;
with arguments `concat: {dim: 1, branches: [...]}`) or with references (`{add: , from: [a, b]}`,
`{concat: {dim: 1}, from: [a, b]}`): both forms take the same arguments. The shape rules name the
branches that disagree.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from archc.ops import register
from archc.ops.base import A, Args, Autograd, Op, OpError, Shape, fmt_shape, numel


def _at_least_two(inputs: list[Shape], what: str) -> None:
    if len(inputs) < 2:
        raise OpError(f"{what} needs at least two inputs, got {len(inputs)}")


class Merge(Op[A]):
    colour = "#ffffff"
    weighted = False
    multi_input = True
    is_module = False
    fresh_output = True


@register
class Add(Merge):
    name = "add"
    autograd = Autograd(saves="none", pass_through=True)
    inplace_capable = True
    doc = "Element-wise sum of equally shaped inputs (residual connections)."
    argument_notes: ClassVar[dict[str, str]] = {
        "dim": "it sums equally shaped inputs element by element; to sum over a dimension "
        "write 'sum: {dim: ...}', to join inputs along one 'concat: {dim: ...}'"
    }

    def infer(self, args: Args, inputs: list[Shape], labels: list[str]) -> Shape:
        _at_least_two(inputs, "add")
        first = inputs[0]
        for shape, label in zip(inputs[1:], labels[1:], strict=True):
            if shape != first:
                raise OpError(
                    f"add: {label} yields {fmt_shape(shape)} "
                    f"but {labels[0]} yields {fmt_shape(first)}"
                )
        return first

    def other_ops(self, args: Args, inputs: list[Shape], out: Shape) -> int:
        return numel(out) * (len(inputs) - 1)

    def expression(self, args: Args, inputs: list[str]) -> str:
        return " + ".join(inputs)

    def inplace_expression(self, args: Args, inputs: list[str]) -> str:
        """`out += identity`, as torchvision's blocks do: sums into the first input's storage."""
        return "".join(f".add_({name})" for name in inputs[1:]).join([inputs[0], ""])


class ConcatArgs(Args):
    dim: int = Field(0, description="dimension without the batch: 0 is channels, -1 the last")


@register
class Concat(Merge[ConcatArgs]):
    name = "concat"
    autograd = Autograd(saves="none", pass_through=True)
    aliases = ("cat",)
    Args = ConcatArgs
    doc = "Concatenate inputs along channels (Inception, DenseNet, U-Net skips)."

    def infer(self, args: ConcatArgs, inputs: list[Shape], labels: list[str]) -> Shape:
        _at_least_two(inputs, "concat")
        first = inputs[0]
        if not -len(first) <= args.dim < len(first):
            raise OpError(f"dim={args.dim} is out of range for a {fmt_shape(first)} input")
        d = args.dim % len(first)
        rest0 = first[:d] + first[d + 1 :]
        for shape, label in zip(inputs[1:], labels[1:], strict=True):
            rest = shape[:d] + shape[d + 1 :]
            if len(shape) != len(first) or rest != rest0:
                raise OpError(
                    f"concat: {label} yields {fmt_shape(rest)} "
                    f"but {labels[0]} yields {fmt_shape(rest0)}"
                )
        return (*first[:d], sum(s[d] for s in inputs), *first[d + 1 :])

    def expression(self, args: ConcatArgs, inputs: list[str]) -> str:
        return f"torch.cat([{', '.join(inputs)}], {args.dim + 1 if args.dim >= 0 else args.dim})"


@register
class Multiply(Merge):
    name = "multiply"
    autograd = Autograd(saves="each_other")
    aliases = ("mul",)
    doc = "Element-wise product with broadcasting, e.g. (C, H, W) x (C, 1, 1) for SE gates."
    argument_notes: ClassVar[dict[str, str]] = {
        "dim": "it multiplies element by element, broadcasting dimensions of size 1 "
        "((C, H, W) x (C, 1, 1)); reshape or unflatten a gate to line it up with a dimension"
    }

    def infer(self, args: Args, inputs: list[Shape], labels: list[str]) -> Shape:
        _at_least_two(inputs, "multiply")
        out = list(inputs[0])
        for shape, label in zip(inputs[1:], labels[1:], strict=True):
            if len(shape) != len(out):
                raise OpError(
                    f"multiply: {label} yields {fmt_shape(shape)} "
                    f"but {labels[0]} yields {fmt_shape(inputs[0])}"
                )
            for i, (a, b) in enumerate(zip(out, shape, strict=True)):
                if a != b and 1 not in (a, b):
                    raise OpError(
                        f"multiply: {label} yields {fmt_shape(shape)}, which "
                        f"does not broadcast with {fmt_shape(tuple(out))}"
                    )
                out[i] = max(a, b)
        return tuple(out)

    def other_ops(self, args: Args, inputs: list[Shape], out: Shape) -> int:
        return numel(out) * (len(inputs) - 1)

    def expression(self, args: Args, inputs: list[str]) -> str:
        return " * ".join(inputs)
