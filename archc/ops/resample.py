"""Upsampling by a scale factor or to a size (U-Net decoders, FPNs)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import model_validator

from archc.ops import register
from archc.ops.base import (
    Args,
    Autograd,
    Call,
    Op,
    OpError,
    Shape,
    fmt_shape,
    ntuple,
    numel,
    spatial,
)


class UpsampleArgs(Args):
    scale: float | None = None
    size: int | list[int] | None = None
    mode: Literal["nearest", "bilinear", "bicubic", "linear", "trilinear"] = "nearest"
    align_corners: bool | None = None

    @model_validator(mode="after")
    def _one_of(self) -> UpsampleArgs:
        if (self.scale is None) == (self.size is None):
            raise ValueError("give exactly one of scale and size")
        if self.align_corners is not None and self.mode == "nearest":
            raise ValueError(
                "align_corners needs an interpolating mode (linear, bilinear, bicubic, trilinear)"
            )
        return self


_MODE_DIMS = {
    "linear": 1,
    "bilinear": 2,
    "bicubic": 2,
    "trilinear": 3,
}  # nearest works for any rank


@register
class Upsample(Op[UpsampleArgs]):
    name = "upsample"
    needs_layout = "channels_first"
    autograd = Autograd(saves="none")
    colour = "#fde9d4"
    weighted = False
    Args = UpsampleArgs
    shorthand = "scale"
    fresh_output = True
    doc = "Resize feature maps by `scale` or to `size`."

    def infer(self, args: UpsampleArgs, inputs: list[Shape], labels: list[str]) -> Shape:
        c, sp = spatial(self.one(inputs), "upsample")
        dims = _MODE_DIMS.get(args.mode)
        if dims is not None and len(sp) != dims:
            raise OpError(
                f"mode '{args.mode}' needs {dims} spatial "
                f"dimension{'s' if dims > 1 else ''}, got {fmt_shape(sp)}"
            )
        if args.size is not None:
            out = ntuple(args.size, len(sp), "size")
        else:
            assert args.scale is not None
            out = tuple(math.floor(s * args.scale) for s in sp)
        if any(o < 1 for o in out):
            raise OpError(f"output size {list(out)} must be positive")
        return (c, *out)

    def other_ops(self, args: UpsampleArgs, inputs: list[Shape], out: Shape) -> int:
        return numel(out)

    def emit(self, args: UpsampleArgs, inputs: list[Shape], out: Shape, inplace: bool) -> Call:
        kw: dict[str, object] = (
            {"size": tuple(out[1:])} if args.size is not None else {"scale_factor": args.scale}
        )
        if args.mode != "nearest":
            kw["mode"] = args.mode
        if args.align_corners is not None:
            kw["align_corners"] = args.align_corners
        return Call("nn.Upsample", (), kw)

    def label(self, args: UpsampleArgs) -> str:
        return f"upsample x{args.scale}" if args.scale is not None else f"upsample to {args.size}"
