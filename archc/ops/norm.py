"""Normalisation layers: batch, layer, group and local response norm."""

from __future__ import annotations

import math

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
    fmt_shape,
    layout_fix,
    layout_text,
    numel,
)


class BatchNormArgs(Args):
    eps: float = Field(1e-5, gt=0)
    momentum: float | None = Field(0.1, ge=0, le=1)
    affine: bool = True
    track_running_stats: bool = True


@register
class BatchNorm(Op[BatchNormArgs]):
    name = "bn"
    needs_layout = "channels_first"
    autograd = Autograd(
        saves="input", side=(Side(2, "channel", nbytes=4),)
    )  # save_mean, save_invstd in float32
    colour = "#f3f3f3"
    weighted = False
    aliases = ("batchnorm",)
    Args = BatchNormArgs
    fresh_output = True
    init_kind = "norm"
    doc = (
        "Batch normalisation over the channel (or feature) "
        "dimension; 1d/2d/3d from the input's rank."
    )

    def largest_param_tensor(self, args: BatchNormArgs, params: int, out: Shape) -> int:
        return params // 2  # weight and bias, equal sizes

    def int64_buffers(self, args: BatchNormArgs, buffers: int) -> int:
        return 1 if args.track_running_stats else 0  # num_batches_tracked

    def infer(self, args: BatchNormArgs, inputs: list[Shape], labels: list[str]) -> Shape:
        shape = self.one(inputs)
        if not 1 <= len(shape) <= 4:
            raise OpError(
                "bn needs a (features), (C, L), (C, H, W) or "
                f"(C, D, H, W) input, got {fmt_shape(shape)}"
            )
        return shape

    def params(self, args: BatchNormArgs, inputs: list[Shape], out: Shape) -> int:
        return 2 * out[0] if args.affine else 0

    def buffers(self, args: BatchNormArgs, inputs: list[Shape], out: Shape) -> int:
        return 2 * out[0] + 1 if args.track_running_stats else 0

    def other_ops(self, args: BatchNormArgs, inputs: list[Shape], out: Shape) -> int:
        return 2 * numel(out)

    def emit(self, args: BatchNormArgs, inputs: list[Shape], out: Shape, inplace: bool) -> Call:
        dims = {1: 1, 2: 1, 3: 2, 4: 3}[len(out)]
        kw: dict[str, object] = {}
        if args.eps != 1e-5:
            kw["eps"] = args.eps
        if args.momentum != 0.1:
            kw["momentum"] = args.momentum
        if not args.affine:
            kw["affine"] = False
        if not args.track_running_stats:
            kw["track_running_stats"] = False
        return Call(f"nn.BatchNorm{dims}d", (out[0],), kw)


class LayerNormArgs(Args):
    dims: int | None = Field(
        None,
        ge=1,
        le=4,
        description="how many trailing dimensions to normalise over: "
        "1 on (D,) and (L, D) inputs; required on a feature map",
    )
    eps: float = Field(1e-5, gt=0)
    elementwise_affine: bool = True
    bias: bool = True


@register
class LayerNorm(Op[LayerNormArgs]):
    name = "layernorm"
    autograd = Autograd(saves="input", side=(Side(2, "sample", nbytes=4),))  # mean and rstd
    colour = "#f3f3f3"
    weighted = False
    aliases = ("ln",)
    Args = LayerNormArgs
    fresh_output = True
    init_kind = "norm"
    doc = (
        "Layer normalisation over the last `dims` dimensions: the features of a (D,) "
        "or (L, D) input, the channels of a channels-last (H, W, C) map with `dims: "
        "1` (ConvNeXt's block); `layernorm2d` for the channels of a (C, H, W) map."
    )

    def largest_param_tensor(self, args: LayerNormArgs, params: int, out: Shape) -> int:
        return params // 2 if args.bias else params  # weight and bias, equal sizes

    @staticmethod
    def dims(args: LayerNormArgs, shape: Shape) -> int:
        """The trailing dims normalised over; a feature map must say
        (the last dim would be its width)."""
        if args.dims is not None:
            return args.dims
        if len(shape) > 2:
            raise OpError(
                f"layernorm on a {fmt_shape(shape)} input would normalise over "
                "its last dimension only; say which: 'dims: 1' for a "
                f"channels-last (H, W, C) map, 'dims: {len(shape)}' for the whole "
                "sample, or 'layernorm2d' for the channels of a (C, H, W) map"
            )
        return 1

    def check_layout(self, args: LayerNormArgs, layout: Layout, shape: Shape) -> None:
        """Normalising over positions rather than features is refused where the layout is known:
        `dims: 1` on a C×H×W map is over the width W, on a C×L sequence over the positions L."""
        if layout is None or len(layout) != len(shape):
            return
        dims = self.dims(args, shape)
        over = layout[-dims:] if 0 < dims < len(layout) else ()
        if over and not {"C", "F"} & set(over):
            fix = (
                "use layernorm2d for the channels at each position, or "
                f"{layout_fix(layout, 'channels_last')}"
                if layout == ("C", "H", "W")
                else layout_fix(layout, "tokens")
            )
            raise OpError(
                f"layernorm over the last {dims} dimension(s) of a "
                f"{fmt_shape(shape)} input laid out {layout_text(layout)} "
                f"normalises over {'×'.join(over)}, not the features; {fix}"
            )

    def infer(self, args: LayerNormArgs, inputs: list[Shape], labels: list[str]) -> Shape:
        shape = self.one(inputs)
        dims = self.dims(args, shape)
        if dims > len(shape):
            raise OpError(
                f"dims={dims} but the input {fmt_shape(shape)} has only {len(shape)} dimensions"
            )
        return shape

    def params(self, args: LayerNormArgs, inputs: list[Shape], out: Shape) -> int:
        size = math.prod(out[-self.dims(args, out) :])
        if not args.elementwise_affine:
            return 0
        return size * (2 if args.bias else 1)

    def other_ops(self, args: LayerNormArgs, inputs: list[Shape], out: Shape) -> int:
        return 5 * numel(out)

    def emit(self, args: LayerNormArgs, inputs: list[Shape], out: Shape, inplace: bool) -> Call:
        kw: dict[str, object] = {}
        if args.eps != 1e-5:
            kw["eps"] = args.eps
        if not args.elementwise_affine:
            kw["elementwise_affine"] = False
        if not args.bias:
            kw["bias"] = False
        return Call("nn.LayerNorm", (list(out[-self.dims(args, out) :]),), kw)


class LayerNorm2dArgs(Args):
    eps: float = Field(1e-5, gt=0)
    elementwise_affine: bool = True


LAYERNORM2D_SOURCE = '''class LayerNorm2d(nn.LayerNorm):
    """torchvision's LayerNorm2d: nn.LayerNorm over the channels of an (N, C, H, W) map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = nn.functional.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)'''


@register
class LayerNorm2d(Op[LayerNorm2dArgs]):
    name = "layernorm2d"
    needs_layout = "channels_first"
    autograd = Autograd(
        saves="input", side=(Side(2, "sample", nbytes=4),)
    )  # mean and rstd (per position)
    colour = "#f3f3f3"
    weighted = False
    Args = LayerNorm2dArgs
    fresh_output = True
    init_kind = "norm"
    module_source = LAYERNORM2D_SOURCE
    doc = (
        "Layer normalisation over the channels of a (C, H, W) map at each position: torchvision's "
        "LayerNorm2d (ConvNeXt's stem, downsampling and head), keys weight and bias."
    )

    def largest_param_tensor(self, args: LayerNorm2dArgs, params: int, out: Shape) -> int:
        return params // 2

    def infer(self, args: LayerNorm2dArgs, inputs: list[Shape], labels: list[str]) -> Shape:
        shape = self.one(inputs)
        if len(shape) != 3:
            raise OpError(
                f"layernorm2d needs a (C, H, W) map, got {fmt_shape(shape)}; for "
                "the last dimension of (L, D) or (H, W, C) input use 'layernorm'"
            )
        return shape

    def params(self, args: LayerNorm2dArgs, inputs: list[Shape], out: Shape) -> int:
        return 2 * out[0] if args.elementwise_affine else 0

    def other_ops(self, args: LayerNorm2dArgs, inputs: list[Shape], out: Shape) -> int:
        return 5 * numel(out)

    def emit(self, args: LayerNorm2dArgs, inputs: list[Shape], out: Shape, inplace: bool) -> Call:
        kw: dict[str, object] = {}
        if args.eps != 1e-5:
            kw["eps"] = args.eps
        if not args.elementwise_affine:
            kw["elementwise_affine"] = False
        return Call("LayerNorm2d", (out[0],), kw)


class GroupNormArgs(Args):
    groups: int = Field(gt=0)
    eps: float = Field(1e-5, gt=0)
    affine: bool = True


@register
class GroupNorm(Op[GroupNormArgs]):
    name = "groupnorm"
    needs_layout = "channels_first"
    autograd = Autograd(saves="input", side=(Side(2, "sample_channel", nbytes=4),))  # mean and rstd
    colour = "#f3f3f3"
    weighted = False
    aliases = ("gn",)
    Args = GroupNormArgs
    shorthand = "groups"
    fresh_output = True
    init_kind = "norm"
    doc = "Group normalisation: channels split into `groups`."

    def largest_param_tensor(self, args: GroupNormArgs, params: int, out: Shape) -> int:
        return params // 2  # weight and bias, equal sizes

    def infer(self, args: GroupNormArgs, inputs: list[Shape], labels: list[str]) -> Shape:
        shape = self.one(inputs)
        if len(shape) < 2:
            raise OpError(f"groupnorm needs a (C, ...) input, got {fmt_shape(shape)}")
        if shape[0] % args.groups:
            raise OpError(f"groups={args.groups} does not divide the {shape[0]} input channels")
        return shape

    def params(self, args: GroupNormArgs, inputs: list[Shape], out: Shape) -> int:
        return 2 * out[0] if args.affine else 0

    def other_ops(self, args: GroupNormArgs, inputs: list[Shape], out: Shape) -> int:
        return 5 * numel(out)

    def emit(self, args: GroupNormArgs, inputs: list[Shape], out: Shape, inplace: bool) -> Call:
        kw: dict[str, object] = {}
        if args.eps != 1e-5:
            kw["eps"] = args.eps
        if not args.affine:
            kw["affine"] = False
        return Call("nn.GroupNorm", (args.groups, out[0]), kw)


class LRNArgs(Args):
    size: int = Field(5, gt=0)
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 1.0


@register
class LocalResponseNorm(Op[LRNArgs]):
    name = "lrn"
    needs_layout = "channels_first"
    autograd = Autograd(
        saves="input", side=(Side(3, "output"),)
    )  # F.local_response_norm's squared, padded, powered intermediates
    colour = "#f3f3f3"
    weighted = False
    aliases = ("local_response_norm",)
    Args = LRNArgs
    shorthand = "size"
    fresh_output = True
    doc = "Local response normalisation across channels (AlexNet, GoogLeNet v1)."

    def infer(self, args: LRNArgs, inputs: list[Shape], labels: list[str]) -> Shape:
        shape = self.one(inputs)
        if len(shape) < 2:
            raise OpError(f"lrn needs a (C, ...) input, got {fmt_shape(shape)}")
        return shape

    def other_ops(self, args: LRNArgs, inputs: list[Shape], out: Shape) -> int:
        return (args.size + 3) * numel(out)

    def emit(self, args: LRNArgs, inputs: list[Shape], out: Shape, inplace: bool) -> Call:
        return Call(
            "nn.LocalResponseNorm",
            (args.size,),
            {"alpha": args.alpha, "beta": args.beta, "k": args.k},
        )
