"""Pooling: windowed max/avg (with ceil_mode), adaptive, and global pools."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import TypeVar

from pydantic import Field

from archc.ops import register
from archc.ops.base import (
    Args,
    Autograd,
    Call,
    Op,
    OpError,
    Shape,
    Side,
    Window,
    compact,
    fmt_shape,
    ntuple,
    numel,
    spatial,
)

IntOrList = int | list[int]


class MaxPoolArgs(Args):
    kernel: IntOrList
    stride: IntOrList | None = Field(None, description="defaults to the kernel size")
    padding: IntOrList = 0
    dilation: IntOrList = 1
    ceil_mode: bool = False


class AvgPoolArgs(Args):
    kernel: IntOrList
    stride: IntOrList | None = Field(None, description="defaults to the kernel size")
    padding: IntOrList = 0
    ceil_mode: bool = False
    count_include_pad: bool = True


def _pool_out(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """PyTorch's pooling size rule, including its ceil_mode correction."""
    span = size + 2 * p - d * (k - 1) - 1
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


PoolArgs = TypeVar("PoolArgs", bound=MaxPoolArgs | AvgPoolArgs)


class WindowPool(Op[PoolArgs]):
    """Shared rule of max and avg pooling."""

    needs_layout = "channels_first"

    colour = "#fde9d4"
    weighted = False

    kind = "pool"

    def window(self, args: MaxPoolArgs | AvgPoolArgs, shape: Shape) -> tuple[tuple[int, ...], ...]:
        _, sp = spatial(shape, self.name)
        n = len(sp)
        k = ntuple(args.kernel, n, "kernel")
        s = ntuple(args.stride, n, "stride") if args.stride is not None else k
        p = ntuple(args.padding, n, "padding")
        d = ntuple(getattr(args, "dilation", 1), n, "dilation")
        if any(v < 1 for v in (*k, *s, *d)) or any(v < 0 for v in p):
            raise OpError("kernel, stride and dilation must be positive and padding >= 0")
        if any(2 * pp > kk for pp, kk in zip(p, k, strict=True)):
            raise OpError(
                f"padding {list(p)} must be at most half the kernel {list(k)} (PyTorch's rule)"
            )
        return k, s, p, d

    def infer(
        self, args: MaxPoolArgs | AvgPoolArgs, inputs: list[Shape], labels: list[str]
    ) -> Shape:
        shape = self.one(inputs)
        c, sp = spatial(shape, self.name)
        k, s, p, d = self.window(args, shape)
        out = tuple(
            _pool_out(size, kk, ss, pp, dd, args.ceil_mode)
            for size, kk, ss, pp, dd in zip(sp, k, s, p, d, strict=True)
        )
        if any(o < 1 for o in out):
            raise OpError(
                f"window {'x'.join(map(str, k))} does not fit "
                f"the {fmt_shape(sp)} feature map it receives"
            )
        for size, kk, ss, pp, dd, oo in zip(sp, k, s, p, d, out, strict=True):
            # a dilated window can straddle the input and see only padding: PyTorch then returns
            # -inf and an out-of-range index that corrupts memory in backward
            if dd > 1 and _sees_only_padding(size, kk, ss, pp, dd, oo):
                raise OpError(
                    f"window {'x'.join(map(str, k))} with dilation {dd} and "
                    f"padding {pp} has output positions that see only "
                    f"padding of the {fmt_shape(sp)} feature map it receives"
                )
        return (c, *out)

    def other_ops(self, args: MaxPoolArgs | AvgPoolArgs, inputs: list[Shape], out: Shape) -> int:
        k, _, _, _ = self.window(args, inputs[0])
        return numel(out) * math.prod(k)

    def common_kwargs(self, args: MaxPoolArgs | AvgPoolArgs, shape: Shape) -> dict[str, object]:
        k, s, p, _ = self.window(args, shape)
        kw: dict[str, object] = {"kernel_size": compact(k)}
        if s != k:
            kw["stride"] = compact(s)
        if any(p):
            kw["padding"] = compact(p)
        if args.ceil_mode:
            kw["ceil_mode"] = True
        return kw

    def label(self, args: MaxPoolArgs | AvgPoolArgs) -> str:
        stride = args.stride if args.stride is not None else args.kernel
        return f"{self.name} {args.kernel}/{stride}"

    def receptive_window(
        self, args: MaxPoolArgs | AvgPoolArgs, inputs: list[Shape], out: Shape
    ) -> Window:
        k, s, _, d = self.window(args, inputs[0])
        return Window(k, tuple(Fraction(v) for v in s), d)


@register
class MaxPool(WindowPool[MaxPoolArgs]):
    name = "maxpool"
    autograd = Autograd(saves="input", side=(Side(1, "output", nbytes=8),))  # int64 indices
    aliases = ("max_pool", "maxpool2d")
    Args = MaxPoolArgs
    shorthand = "kernel"
    fresh_output = True
    doc = "Max pooling; stride defaults to the kernel."

    def emit(self, args: MaxPoolArgs, inputs: list[Shape], out: Shape, inplace: bool) -> Call:
        kw = self.common_kwargs(args, inputs[0])
        _, _, _, d = self.window(args, inputs[0])
        if any(v != 1 for v in d):
            kw["dilation"] = compact(d)
        return Call(f"nn.MaxPool{len(out) - 1}d", (), kw)


@register
class AvgPool(WindowPool[AvgPoolArgs]):
    name = "avgpool"
    autograd = Autograd(saves="input")
    aliases = ("avg_pool", "avgpool2d")
    Args = AvgPoolArgs
    shorthand = "kernel"
    fresh_output = True
    doc = "Average pooling; stride defaults to the kernel."

    def infer(
        self, args: MaxPoolArgs | AvgPoolArgs, inputs: list[Shape], labels: list[str]
    ) -> Shape:
        out = super().infer(args, inputs, labels)
        _, sp = spatial(inputs[0], self.name)
        k = self.window(args, inputs[0])[0]
        # nn.AvgPool3d (alone of the window pools) wants every dimension at least the kernel,
        # padding not counted, even where ceil_mode would give an output
        if len(sp) == 3 and any(size < kk for size, kk in zip(sp, k, strict=True)):
            raise OpError(
                f"window {'x'.join(map(str, k))} does not fit the {fmt_shape(sp)} volume it "
                "receives (3-d average pooling needs every dimension at least the kernel)"
            )
        return out

    def emit(self, args: AvgPoolArgs, inputs: list[Shape], out: Shape, inplace: bool) -> Call:
        kw = self.common_kwargs(args, inputs[0])
        if not args.count_include_pad:
            kw["count_include_pad"] = False
        return Call(f"nn.AvgPool{len(out) - 1}d", (), kw)


class AdaptiveArgs(Args):
    output: IntOrList = Field(description="output size per spatial dimension")


class AdaptivePool(Op[AdaptiveArgs]):
    needs_layout = "channels_first"
    colour = "#fde9d4"
    weighted = False
    Args = AdaptiveArgs
    shorthand = "output"
    torch_name: str

    def infer(self, args: AdaptiveArgs, inputs: list[Shape], labels: list[str]) -> Shape:
        shape = self.one(inputs)
        c, sp = spatial(shape, self.name)
        size = ntuple(args.output, len(sp), "output")
        if any(v < 1 for v in size):
            raise OpError(f"output size must be positive, got {list(size)}")
        return (c, *size)

    def other_ops(self, args: AdaptiveArgs, inputs: list[Shape], out: Shape) -> int:
        return numel(inputs[0])

    def emit(self, args: AdaptiveArgs, inputs: list[Shape], out: Shape, inplace: bool) -> Call:
        return Call(f"nn.{self.torch_name}{len(out) - 1}d", (compact(out[1:]),))

    def label(self, args: AdaptiveArgs) -> str:
        return f"{self.name} -> {args.output}"

    def receptive_window(self, args: AdaptiveArgs, inputs: list[Shape], out: Shape) -> Window:
        """PyTorch's bins run from floor(i*n/o) to ceil((i+1)*n/o): the widest bin
        is the kernel, n/o the stride.

        The widest bin, ceil((n + o - gcd(n, o)) / o), is the width at the largest fractional start.
        """
        sizes = inputs[0][1:]
        kernel = tuple(
            -(-(n + o - math.gcd(n, o)) // o) for n, o in zip(sizes, out[1:], strict=True)
        )
        return Window(
            kernel,
            tuple(Fraction(n, o) for n, o in zip(sizes, out[1:], strict=True)),
            (1,) * len(sizes),
        )


@register
class AdaptiveAvgPool(AdaptivePool):
    name = "adaptive_avgpool"
    autograd = Autograd(saves="input")
    torch_name = "AdaptiveAvgPool"
    doc = "Average pooling to a fixed output size."


@register
class AdaptiveMaxPool(AdaptivePool):
    name = "adaptive_maxpool"
    autograd = Autograd(saves="input", side=(Side(1, "output", nbytes=8),))  # int64 indices
    torch_name = "AdaptiveMaxPool"
    doc = "Max pooling to a fixed output size."


class GlobalPool(Op):
    needs_layout = "channels_first"
    colour = "#fde9d4"
    weighted = False
    torch_name: str

    def infer(self, args: Args, inputs: list[Shape], labels: list[str]) -> Shape:
        c, sp = spatial(self.one(inputs), self.name)
        return (c, *(1 for _ in sp))

    def other_ops(self, args: Args, inputs: list[Shape], out: Shape) -> int:
        return numel(inputs[0])

    def emit(self, args: Args, inputs: list[Shape], out: Shape, inplace: bool) -> Call:
        return Call(f"nn.{self.torch_name}{len(out) - 1}d", (1,))

    def receptive_window(self, args: Args, inputs: list[Shape], out: Shape) -> Window:
        """One window over the whole feature map."""
        sizes = inputs[0][1:]
        return Window(tuple(sizes), tuple(Fraction(n) for n in sizes), (1,) * len(sizes))


@register
class GlobalAvgPool(GlobalPool):
    name = "global_avgpool"
    autograd = Autograd(saves="none")  # a global mean keeps only sizes
    aliases = ("gap",)
    torch_name = "AdaptiveAvgPool"
    doc = "Average over all spatial positions: (C, H, W) -> (C, 1, 1)."


@register
class GlobalMaxPool(GlobalPool):
    name = "global_maxpool"
    autograd = Autograd(saves="input", side=(Side(1, "output", nbytes=8),))  # int64 indices
    torch_name = "AdaptiveMaxPool"
    doc = "Max over all spatial positions: (C, H, W) -> (C, 1, 1)."


MAX_WINDOW_CHECK = (
    1_000_000  # windows examined by _sees_only_padding before it gives up with an error
)


def _sees_only_padding(size: int, k: int, s: int, p: int, d: int, out: int) -> bool:
    """Whether some output window of a dilated pooling sees only padding, without visiting every
    output position (a feature map may have 10^9 of them).

    Window i starts at a = i*s - p with taps a, a+d, ..., a+(k-1)d. One starting inside the input
    sees it. One starting right of it (the last, if any) sees nothing. One starting left of it
    (i < p/s) sees the input iff its first tap at or right of 0, at a mod d, lies inside and is
    still a tap of the window; the residues repeat with period d/gcd(s, d), so that many suffice.
    """
    if (out - 1) * s - p >= size:
        return True
    left = min(out, -(-p // s), d // math.gcd(s, d))
    if left > MAX_WINDOW_CHECK:
        raise OpError(
            f"kernel {k} with dilation {d} and padding {p} is "
            f"too large to check against a feature map of {size}"
        )
    return any((a := i * s - p) + (k - 1) * d < 0 or a % d >= size for i in range(left))
