"""Parameter-free reshaping of feature maps: strided spatial subsampling and channel zero-padding.

Together they write He et al.'s option-A shortcut (CIFAR ResNet-20/32/56) in a spec:
`[{subsample: 2}, {pad_channels: {before: 8, after: 8}}]` is
`F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 8, 8))`. Both are functions in `forward`, not modules, so
they add no state_dict keys.
"""

from __future__ import annotations

from fractions import Fraction

from pydantic import Field

from archc.ops import register
from archc.ops.base import (
    Args,
    Autograd,
    Op,
    OpError,
    Shape,
    Window,
    fmt_shape,
    ntuple,
    numel,
    spatial,
)

IntOrList = int | list[int]


class SubsampleArgs(Args):
    stride: IntOrList = Field(
        description="keep every stride-th position per spatial dim, starting at 0"
    )


@register
class Subsample(Op[SubsampleArgs]):
    name = "subsample"
    needs_layout = "channels_first"
    autograd = Autograd(saves="none", view=True)
    colour = "#ffffff"
    weighted = False
    Args = SubsampleArgs
    shorthand = "stride"
    is_module = False
    doc = "Strided spatial slice x[:, :, ::s, ::s] (option-A shortcut); output size ceil(size / s)."

    def strides(self, args: SubsampleArgs, shape: Shape) -> tuple[int, ...]:
        _, sp = spatial(shape, "subsample")
        s = ntuple(args.stride, len(sp), "stride")
        if any(v < 1 for v in s):
            raise OpError(f"stride must be positive, got {list(s)}")
        return s

    def infer(self, args: SubsampleArgs, inputs: list[Shape], labels: list[str]) -> Shape:
        shape = self.one(inputs)
        c, sp = spatial(shape, "subsample")
        s = self.strides(args, shape)
        return (c, *(-(-size // ss) for size, ss in zip(sp, s, strict=True)))

    def receptive_window(self, args: SubsampleArgs, inputs: list[Shape], out: Shape) -> Window:
        """A 1-wide window moving by the stride: the field keeps its size, the stride multiplies."""
        s = self.strides(args, inputs[0])
        return Window((1,) * len(s), tuple(Fraction(v) for v in s), (1,) * len(s))

    def source(
        self, args: SubsampleArgs, inputs: list[str], shapes: list[Shape], inplace: bool
    ) -> str:
        """`x[:, :, ::2, ::2]`: one step per spatial dim of the (statically known) input."""
        return f"{inputs[0]}[:, :, {', '.join(f'::{s}' for s in self.strides(args, shapes[0]))}]"

    def label(self, args: SubsampleArgs) -> str:
        return f"subsample /{args.stride}"


class PadChannelsArgs(Args):
    before: int = Field(0, ge=0, description="zero channels added in front")
    after: int = Field(0, ge=0, description="zero channels added at the end")
    value: float = Field(0.0, description="fill value")


@register
class PadChannels(Op[PadChannelsArgs]):
    name = "pad_channels"
    needs_layout = "channels_first"
    autograd = Autograd(saves="none")
    colour = "#ffffff"
    weighted = False
    Args = PadChannelsArgs
    is_module = False
    fresh_output = True
    doc = "Add constant (zero) channels before and after the input's channels (option-A shortcut)."

    def infer(self, args: PadChannelsArgs, inputs: list[Shape], labels: list[str]) -> Shape:
        shape = self.one(inputs)
        if not shape:
            raise OpError(f"pad_channels needs a (C, ...) input, got {fmt_shape(shape)}")
        return (shape[0] + args.before + args.after, *shape[1:])

    def other_ops(self, args: PadChannelsArgs, inputs: list[Shape], out: Shape) -> int:
        return numel(out)

    def source(
        self, args: PadChannelsArgs, inputs: list[str], shapes: list[Shape], inplace: bool
    ) -> str:
        # F.pad lists pads from the last dim backwards: (0, 0) per trailing dim, then the channels.
        pad = [0, 0] * (len(shapes[0]) - 1) + [args.before, args.after]
        value = f", value={args.value!r}" if args.value != 0.0 else ""
        return f"torch.nn.functional.pad({inputs[0]}, {pad}{value})"

    def label(self, args: PadChannelsArgs) -> str:
        return f"pad channels +{args.before}/+{args.after}"
