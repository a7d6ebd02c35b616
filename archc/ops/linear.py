"""Linear layers and the shape plumbing around them: flatten, dropout, identity."""

from __future__ import annotations

from fractions import Fraction
from typing import Literal

from pydantic import Field

from archc.ops import register
from archc.ops.base import (
    Args,
    Autograd,
    Call,
    Layout,
    Op,
    OpError,
    Shape,
    Side,
    Window,
    fmt_shape,
    layout_fix,
    layout_text,
    numel,
)


class LinearArgs(Args):
    out: int = Field(gt=0, description="output features")
    bias: bool = True
    channels_last: bool = Field(
        False,
        description="allow an input of rank 3 or more, transformed on its last "
        "dimension as nn.Linear does (ConvNeXt's MLP on (H, W, C))",
    )


@register
class Linear(Op[LinearArgs]):
    name = "linear"
    autograd = Autograd(saves="input")
    colour = "#e4dcf2"
    weighted = True
    aliases = ("fc", "dense")
    Args = LinearArgs
    shorthand = "out"
    fresh_output = True
    init_kind = "linear"
    doc = (
        "Fully connected layer on the last dimension; in_features is inferred. A feature map needs "
        "'channels_last: true' (it is then applied at every position, as nn.Linear does)."
    )

    def largest_param_tensor(self, args: LinearArgs, params: int, out: Shape) -> int:
        return params - (out[-1] if args.bias else 0)  # the weight

    def check_layout(self, args: LinearArgs, layout: Layout, shape: Shape) -> None:
        """On a map whose layout is known, say which fix fits: per position on H×W×C, never over
        the width of a C×H×W map (a silent channels_last there would mix W)."""
        if layout is None or len(layout) != len(shape) or len(shape) < 3:
            return
        seen = f"a {fmt_shape(shape)} map laid out {layout_text(layout)}"
        if layout[-1] == "C" and not args.channels_last:
            raise OpError(
                f"linear on {seen}: write 'channels_last: true' to apply it at every position "
                "(a flatten before it would mix the positions)"
            )
        if layout[-1] != "C" and args.channels_last:
            raise OpError(
                f"channels_last: true on {seen} would mix its last dimension "
                f"{layout[-1]}, not the channels; {layout_fix(layout, 'channels_last')} first"
            )
        if layout[-1] != "C":
            raise OpError(
                f"linear on {seen}: for a classifier add '- flatten' before it, for an MLP "
                f"at every position {layout_fix(layout, 'channels_last')} and write "
                "'channels_last: true'"
            )

    def infer(self, args: LinearArgs, inputs: list[Shape], labels: list[str]) -> Shape:
        shape = self.one(inputs)
        if len(shape) > 2 and not args.channels_last:
            raise OpError(
                f"linear received a {fmt_shape(shape)} feature map; for a "
                "classifier add '- flatten' before it, for an MLP on a "
                "channels-last (H, W, C) map write 'channels_last: true'"
            )
        return (*shape[:-1], args.out)

    def params(self, args: LinearArgs, inputs: list[Shape], out: Shape) -> int:
        return inputs[0][-1] * args.out + (args.out if args.bias else 0)

    def macs(self, args: LinearArgs, inputs: list[Shape], out: Shape) -> int:
        return numel(out) * inputs[0][-1]

    def other_ops(self, args: LinearArgs, inputs: list[Shape], out: Shape) -> int:
        return numel(out) if args.bias else 0

    def emit(self, args: LinearArgs, inputs: list[Shape], out: Shape, inplace: bool) -> Call:
        return Call("nn.Linear", (inputs[0][-1], args.out), {} if args.bias else {"bias": False})

    def receptive_window(self, args: LinearArgs, inputs: list[Shape], out: Shape) -> Window | None:
        """On a channels-last map or token groups (rank 3 and more) it is pointwise in the
        dimensions before the last (its features); a flat input has no window."""
        if len(out) < 3:
            return None
        ones = (1,) * (len(out) - 1)
        return Window(ones, tuple(Fraction(1) for _ in ones), ones)

    def label(self, args: LinearArgs) -> str:
        return f"linear {args.out}"


class FlattenArgs(Args):
    start: int = Field(
        0, description="first dimension to flatten, without the batch (negative: from the end)"
    )
    end: int = Field(-1, description="last dimension to flatten")


@register
class Flatten(Op[FlattenArgs]):
    name = "flatten"
    autograd = Autograd(saves="none", view=True, pass_through=True)
    colour = "#ffffff"
    weighted = False
    Args = FlattenArgs
    doc = (
        "Flatten dimensions start..end into one, keeping "
        "the batch: (C, H, W) -> (C*H*W,) by default."
    )

    def infer(self, args: FlattenArgs, inputs: list[Shape], labels: list[str]) -> Shape:
        shape = self.one(inputs)
        rank = len(shape)
        for what, d in (("start", args.start), ("end", args.end)):
            if not -rank <= d < rank:
                raise OpError(f"{what}={d} is out of range for a {fmt_shape(shape)} input")
        start, end = args.start % rank, args.end % rank
        if start > end:
            raise OpError(
                f"start={args.start} comes after end={args.end} for a {fmt_shape(shape)} input"
            )
        return (*shape[:start], numel(shape[start : end + 1]), *shape[end + 1 :])

    def layout(
        self, args: FlattenArgs, inputs: list[Layout], shapes: list[Shape], out: Shape
    ) -> Layout:
        """Positions flattened together are a sequence L (C×H×W from 1 is C×L, H×W×C to 1 is L×D);
        everything flattened is flat features."""
        layout = inputs[0]
        if layout is None:
            return None
        start, end = args.start % len(layout), args.end % len(layout)
        merged = layout[start : end + 1]
        if len(merged) == len(layout):
            return ("F",)
        if "C" in merged or "F" in merged:
            return None
        return (*layout[:start], "L", *layout[end + 1 :])

    def emit(self, args: FlattenArgs, inputs: list[Shape], out: Shape, inplace: bool) -> Call:
        rank = len(inputs[0])
        start, end = args.start % rank + 1, args.end % rank + 1
        if end == rank:
            return Call("nn.Flatten", () if start == 1 else (start,))
        return Call("nn.Flatten", (start, end))


class DropoutArgs(Args):
    p: float = Field(0.5, ge=0, le=1, description="probability of zeroing an element")


@register
class Dropout(Op[DropoutArgs]):
    name = "dropout"
    autograd = Autograd(saves="none", side=(Side(1, "output", nbytes=1),))  # the bool mask
    colour = "#ffffff"
    weighted = False
    Args = DropoutArgs
    shorthand = "p"
    doc = "Zero random elements during training."

    def emit(self, args: DropoutArgs, inputs: list[Shape], out: Shape, inplace: bool) -> Call:
        return Call("nn.Dropout", () if args.p == 0.5 else (args.p,))

    def label(self, args: DropoutArgs) -> str:
        return f"dropout {args.p}"


class StochasticDepthArgs(Args):
    p: float = Field(
        ge=0,
        le=1,
        description="probability of dropping a sample's (row) or the batch's branch; "
        "an expression of the block index gives torchvision's linear schedule",
    )
    mode: Literal["row", "batch"] = Field(
        "row", description="row: per sample; batch: the whole batch at once"
    )


@register
class StochasticDepth(Op[StochasticDepthArgs]):
    name = "stochastic_depth"
    autograd = Autograd(
        saves="none", side=(Side(1, "sample"),)
    )  # the per-sample noise the product keeps
    colour = "#ffffff"
    weighted = False
    Args = StochasticDepthArgs
    shorthand = "p"
    is_module = False
    doc = (
        "Drop a residual branch during training (Huang et al. 2016), scaling survivors by 1/(1-p): "
        "torchvision.ops.stochastic_depth, the same random draws; the identity in eval mode."
    )

    def expression(self, args: StochasticDepthArgs, inputs: list[str]) -> str:
        x = inputs[0]
        survival = 1.0 - args.p
        size = (
            f"({x}.shape[0],) + (1,) * ({x}.dim() - 1)"
            if args.mode == "row"
            else f"(1,) * {x}.dim()"
        )
        noise = f"{x}.new_empty({size}).bernoulli_({survival!r})"
        if survival > 0.0:
            noise += f".div_({survival!r})"
        # p = 0 keeps the same code (no draw: torchvision's `if p == 0.0: return input`), so that
        # the blocks of a linear stochastic-depth schedule share one class with the rate an argument
        return f"({x} * {noise} if self.training and {survival!r} < 1.0 else {x})"

    def other_ops(self, args: StochasticDepthArgs, inputs: list[Shape], out: Shape) -> int:
        return numel(out) if args.p > 0 else 0

    def label(self, args: StochasticDepthArgs) -> str:
        return f"stochastic depth {args.p:.3g} ({args.mode})"


@register
class Dropout2d(Op[DropoutArgs]):
    name = "dropout2d"
    needs_layout = "channels_first"
    autograd = Autograd(
        saves="none", side=(Side(1, "sample_channel"),)
    )  # one noise value per sample and channel
    colour = "#ffffff"
    weighted = False
    Args = DropoutArgs
    shorthand = "p"
    doc = "Zero whole channels during training."

    def infer(self, args: DropoutArgs, inputs: list[Shape], labels: list[str]) -> Shape:
        shape = self.one(inputs)
        if len(shape) != 3:
            raise OpError(f"dropout2d needs a (C, H, W) input, got {fmt_shape(shape)}")
        return shape

    def emit(self, args: DropoutArgs, inputs: list[Shape], out: Shape, inplace: bool) -> Call:
        return Call("nn.Dropout2d", () if args.p == 0.5 else (args.p,))


@register
class Identity(Op):
    name = "identity"
    autograd = Autograd(saves="none", view=True, pass_through=True)
    colour = "#ffffff"
    weighted = False
    is_module = False
    doc = "Pass the input through unchanged (an empty residual branch)."

    def expression(self, args: Args, inputs: list[str]) -> str:
        return inputs[0]
