"""Convolutions (1d/2d/3d picked from the input's rank), plain and transposed."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Literal

from pydantic import Field

from archc.ops import register
from archc.ops.base import (
    Args,
    Autograd,
    Call,
    Op,
    OpError,
    Shape,
    Window,
    compact,
    fmt_shape,
    ntuple,
    numel,
    spatial,
)

IntOrList = int | list[int]


class ConvArgs(Args):
    out: int = Field(gt=0, description="output channels")
    kernel: IntOrList = Field(
        description="kernel size: an int or one value per spatial dim ([1, 7])"
    )
    stride: IntOrList = 1
    padding: IntOrList | Literal["same", "valid"] = 0
    dilation: IntOrList = 1
    groups: int = Field(1, gt=0, description="channel groups; in_channels gives a depthwise conv")
    bias: bool = True
    padding_mode: Literal["zeros", "reflect", "replicate", "circular"] = "zeros"


def _positive(values: tuple[int, ...], what: str, allow_zero: bool = False) -> None:
    low = 0 if allow_zero else 1
    if any(v < low for v in values):
        raise OpError(f"{what} must be {'>= 0' if allow_zero else 'positive'}, got {list(values)}")


def _check_groups(c_in: int, out: int, groups: int) -> None:
    if c_in % groups or out % groups:
        raise OpError(
            f"groups={groups} must divide both input channels ({c_in}) and output channels ({out})"
        )


def _check_padding_mode(
    mode: str, sp: Shape, k: tuple[int, ...], p: tuple[int, ...], d: tuple[int, ...], same: bool
) -> None:
    """PyTorch pads reflect-mode by less than the size, circular-mode by at most the size."""
    for size, kk, pp, dd in zip(sp, k, p, d, strict=True):
        pad = -(-dd * (kk - 1) // 2) if same else pp
        if (mode == "reflect" and pad >= size) or (mode == "circular" and pad > size):
            rule = "smaller than" if mode == "reflect" else "at most"
            raise OpError(
                f"padding {pad} in '{mode}' mode must be {rule} "
                f"the {fmt_shape(sp)} feature map it receives"
            )


def _kxk(kernel: tuple[int, ...]) -> str:
    return "x".join(map(str, kernel))


@register
class Conv(Op[ConvArgs]):
    name = "conv"
    needs_layout = "channels_first"
    autograd = Autograd(saves="input")
    colour = "#dbe8f6"
    weighted = True
    aliases = ("conv2d",)
    Args = ConvArgs
    shorthand = "out"
    fresh_output = True
    init_kind = "conv"
    doc = "Convolution; 1d/2d/3d follows the input's rank. Input channels are inferred."

    def largest_param_tensor(self, args: ConvArgs, params: int, out: Shape) -> int:
        return params - (out[0] if args.bias else 0)  # the weight

    def geometry(self, args: ConvArgs, shape: Shape) -> tuple[tuple[int, ...], ...]:
        _, sp = spatial(shape, "conv")
        n = len(sp)
        k = ntuple(args.kernel, n, "kernel")
        s = ntuple(args.stride, n, "stride")
        d = ntuple(args.dilation, n, "dilation")
        _positive(k, "kernel")
        _positive(s, "stride")
        _positive(d, "dilation")
        if args.padding == "same":
            if any(v != 1 for v in s):
                raise OpError("padding 'same' needs stride 1 (PyTorch's rule)")
            p = tuple(dd * (kk - 1) // 2 for kk, dd in zip(k, d, strict=True))
        elif args.padding == "valid":
            p = (0,) * n
        else:
            p = ntuple(args.padding, n, "padding")
            _positive(p, "padding", allow_zero=True)
        return k, s, p, d

    def infer(self, args: ConvArgs, inputs: list[Shape], labels: list[str]) -> Shape:
        shape = self.one(inputs)
        c_in, sp = spatial(shape, "conv")
        k, s, p, d = self.geometry(args, shape)
        _check_groups(c_in, args.out, args.groups)
        out = []
        for size, kk, ss, pp, dd in zip(sp, k, s, p, d, strict=True):
            if args.padding == "same":
                out.append(size)
                continue
            o = (size + 2 * pp - dd * (kk - 1) - 1) // ss + 1
            if o < 1:
                raise OpError(
                    f"kernel {_kxk(k)} (dilation {list(d) if len(set(d)) > 1 else d[0]}, "
                    f"padding {list(p) if len(set(p)) > 1 else p[0]}) does not fit the "
                    f"{fmt_shape(sp)} feature map it receives"
                )
            out.append(o)
        if args.padding_mode != "zeros":
            _check_padding_mode(args.padding_mode, sp, k, p, d, args.padding == "same")
        return (args.out, *out)

    def params(self, args: ConvArgs, inputs: list[Shape], out: Shape) -> int:
        c_in = inputs[0][0]
        k = ntuple(args.kernel, len(inputs[0]) - 1, "kernel")
        return args.out * (c_in // args.groups) * math.prod(k) + (args.out if args.bias else 0)

    def macs(self, args: ConvArgs, inputs: list[Shape], out: Shape) -> int:
        c_in = inputs[0][0]
        k = ntuple(args.kernel, len(inputs[0]) - 1, "kernel")
        return numel(out) * (c_in // args.groups) * math.prod(k)

    def other_ops(self, args: ConvArgs, inputs: list[Shape], out: Shape) -> int:
        return numel(out) if args.bias else 0

    def emit(self, args: ConvArgs, inputs: list[Shape], out: Shape, inplace: bool) -> Call:
        n = len(inputs[0]) - 1
        k, s, p, d = self.geometry(args, inputs[0])
        kw: dict[str, object] = {"kernel_size": compact(k)}
        if any(v != 1 for v in s):
            kw["stride"] = compact(s)
        if args.padding == "same":
            kw["padding"] = "same"
        elif any(p):
            kw["padding"] = compact(p)
        if any(v != 1 for v in d):
            kw["dilation"] = compact(d)
        if args.groups != 1:
            kw["groups"] = args.groups
        if not args.bias:
            kw["bias"] = False
        if args.padding_mode != "zeros":
            kw["padding_mode"] = args.padding_mode
        return Call(f"nn.Conv{n}d", (inputs[0][0], args.out), kw)

    def label(self, args: ConvArgs) -> str:
        k = args.kernel if isinstance(args.kernel, list) else [args.kernel, args.kernel]
        s = args.stride if isinstance(args.stride, int) else max(args.stride)
        text = f"conv {_kxk(tuple(k))}" + (f"/{s}" if s != 1 else "") + f", {args.out}"
        return text + (f", g{args.groups}" if args.groups != 1 else "")

    def receptive_window(self, args: ConvArgs, inputs: list[Shape], out: Shape) -> Window:
        k, s, _, d = self.geometry(args, inputs[0])
        return Window(k, tuple(Fraction(v) for v in s), d)


class ConvTransposeArgs(Args):
    out: int = Field(gt=0)
    kernel: IntOrList
    stride: IntOrList = 1
    padding: IntOrList = 0
    output_padding: IntOrList = 0
    dilation: IntOrList = 1
    groups: int = Field(1, gt=0)
    bias: bool = True


@register
class ConvTranspose(Op[ConvTransposeArgs]):
    name = "conv_transpose"
    needs_layout = "channels_first"
    autograd = Autograd(saves="input")
    colour = "#dbe8f6"
    weighted = True
    aliases = ("deconv",)
    Args = ConvTransposeArgs
    shorthand = "out"
    fresh_output = True
    init_kind = "conv"
    doc = "Transposed convolution (learned upsampling), e.g. U-Net's up-convolutions."

    def largest_param_tensor(self, args: ConvTransposeArgs, params: int, out: Shape) -> int:
        return params - (out[0] if args.bias else 0)  # the weight

    def _geom(self, args: ConvTransposeArgs, shape: Shape) -> tuple[tuple[int, ...], ...]:
        _, sp = spatial(shape, "conv_transpose")
        n = len(sp)
        return tuple(
            ntuple(v, n, what)
            for v, what in (
                (args.kernel, "kernel"),
                (args.stride, "stride"),
                (args.padding, "padding"),
                (args.output_padding, "output_padding"),
                (args.dilation, "dilation"),
            )
        )

    def infer(self, args: ConvTransposeArgs, inputs: list[Shape], labels: list[str]) -> Shape:
        shape = self.one(inputs)
        c_in, sp = spatial(shape, "conv_transpose")
        k, s, p, op_, d = self._geom(args, shape)
        _positive(k, "kernel")
        _positive(s, "stride")
        _positive(d, "dilation")
        _positive(p, "padding", allow_zero=True)
        _positive(op_, "output_padding", allow_zero=True)
        if any(oo >= max(ss, dd) for oo, ss, dd in zip(op_, s, d, strict=True)):
            raise OpError(
                f"output_padding {list(op_)} must be smaller than "
                "the stride or the dilation (PyTorch's rule)"
            )
        _check_groups(c_in, args.out, args.groups)
        out = [
            (i - 1) * ss - 2 * pp + dd * (kk - 1) + oo + 1
            for i, kk, ss, pp, oo, dd in zip(sp, k, s, p, op_, d, strict=True)
        ]
        if any(o < 1 for o in out):
            raise OpError(f"output would be {fmt_shape(tuple(out))} for the {fmt_shape(sp)} input")
        return (args.out, *out)

    def params(self, args: ConvTransposeArgs, inputs: list[Shape], out: Shape) -> int:
        k = ntuple(args.kernel, len(inputs[0]) - 1, "kernel")
        return inputs[0][0] * (args.out // args.groups) * math.prod(k) + (
            args.out if args.bias else 0
        )

    def macs(self, args: ConvTransposeArgs, inputs: list[Shape], out: Shape) -> int:
        k = ntuple(args.kernel, len(inputs[0]) - 1, "kernel")
        return numel(inputs[0]) * (args.out // args.groups) * math.prod(k)

    def other_ops(self, args: ConvTransposeArgs, inputs: list[Shape], out: Shape) -> int:
        return numel(out) if args.bias else 0

    def emit(self, args: ConvTransposeArgs, inputs: list[Shape], out: Shape, inplace: bool) -> Call:
        n = len(inputs[0]) - 1
        k, s, p, op_, d = self._geom(args, inputs[0])
        kw: dict[str, object] = {"kernel_size": compact(k)}
        for key, val, default in (
            ("stride", s, 1),
            ("padding", p, 0),
            ("output_padding", op_, 0),
            ("dilation", d, 1),
        ):
            if any(v != default for v in val):
                kw[key] = compact(val)
        if args.groups != 1:
            kw["groups"] = args.groups
        if not args.bias:
            kw["bias"] = False
        return Call(f"nn.ConvTranspose{n}d", (inputs[0][0], args.out), kw)

    def label(self, args: ConvTransposeArgs) -> str:
        return f"deconv {args.kernel}/{args.stride}, {args.out}"

    def receptive_window(self, args: ConvTransposeArgs, inputs: list[Shape], out: Shape) -> Window:
        """An output position gathers at most floor((k-1)*d/s) + 1
        neighbouring inputs; the stride is 1/s."""
        k, s, _, _, d = self._geom(args, inputs[0])
        span = tuple((kk - 1) * dd // ss + 1 for kk, ss, dd in zip(k, s, d, strict=True))
        return Window(span, tuple(Fraction(1, ss) for ss in s), (1,) * len(k))
