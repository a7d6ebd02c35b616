"""Learned tensors of the spec's own: ViT's class token and position
embedding, ConvNeXt's layer scale.

A `parameter` op owns one tensor, held by the enclosing module as an nn.Parameter named after the
node (`name: class_token` gives the state_dict key `class_token`, inside a block `...layer_scale`),
and combines it with the flowing tensor: added (position embedding), multiplied (layer scale) or
concatenated in front along a dim (class token, expanded over the batch).
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from archc.ops import register
from archc.ops.base import Args, Autograd, Call, Op, OpError, Shape, fmt_shape, numel


class ParameterArgs(Args):
    shape: list[int] = Field(
        min_length=1,
        description="the stored tensor's shape, as torchvision stores it; "
        "a leading 1 beyond the input's rank is the batch",
    )
    use: Literal["add", "multiply", "concat"] = Field(
        "add",
        description=(
            "add (position embedding), multiply (layer scale) or concat "
            "in front along `dim` (class token, expanded over the batch)"
        ),
    )
    dim: int = Field(0, description="concat: dimension without the batch")
    init: Literal["zeros", "ones", "constant", "normal", "trunc_normal"] = Field(
        "zeros",
        description=(
            "initial values; trunc_normal is nn.init.trunc_normal_ (timm's and "
            "torchvision's Swin/MaxViT tables: std 0.02 cut at the absolute bounds a and b)"
        ),
    )
    value: float = Field(0.0, description="init: constant: the value (ConvNeXt's layer scale 1e-6)")
    mean: float = Field(0.0, description="init: normal and trunc_normal: the mean")
    std: float = Field(
        1.0,
        gt=0,
        description="init: normal and trunc_normal: the standard deviation "
        "(ViT's position embedding 0.02)",
    )
    a: float = Field(
        -2.0,
        description="init: trunc_normal: the lower cut, an absolute value as in "
        "nn.init.trunc_normal_ (not a multiple of std)",
    )
    b: float = Field(2.0, description="init: trunc_normal: the upper cut, an absolute value")


@register
class Parameter(Op[ParameterArgs]):
    name = "parameter"
    aliases = ("param",)
    Args = ParameterArgs
    owns_tensor = True
    autograd = Autograd(saves="input")  # the input, for the tensor's gradient under multiply
    colour = "#fdf1d6"
    weighted = False
    doc = (
        "A learned tensor (nn.Parameter named after the item) added to, multiplied with or "
        "concatenated in front of the input: position embedding, layer scale, class token."
    )

    def infer(self, args: ParameterArgs, inputs: list[Shape], labels: list[str]) -> Shape:
        x = self.one(inputs)
        shape = tuple(args.shape)
        if any(d <= 0 for d in shape):
            raise OpError(f"parameter shape {args.shape} has a size below 1")
        if args.init == "trunc_normal" and not args.a < args.b:
            raise OpError(f"trunc_normal needs a < b, got a {args.a} and b {args.b}")
        if len(shape) > len(x) + 1 or (len(shape) == len(x) + 1 and shape[0] != 1):
            raise OpError(
                f"a {fmt_shape(shape)} parameter does not fit a {fmt_shape(x)} input: "
                "it may have one more (batch) dimension than the input, of size 1"
            )
        own = shape[-len(x) :] if len(shape) > len(x) else shape
        if args.use == "concat":
            if len(own) != len(x):
                raise OpError(
                    "concat needs a parameter of the input's rank (optionally with "
                    f"a leading 1), got {fmt_shape(shape)} for a {fmt_shape(x)} input"
                )
            if not -len(x) <= args.dim < len(x):
                raise OpError(f"dim={args.dim} is out of range for a {fmt_shape(x)} input")
            d = args.dim % len(x)
            if own[:d] + own[d + 1 :] != x[:d] + x[d + 1 :]:
                raise OpError(
                    f"concat along dim {d}: the {fmt_shape(shape)} parameter "
                    f"and the {fmt_shape(x)} input differ in another dimension"
                )
            return (*x[:d], x[d] + own[d], *x[d + 1 :])
        aligned = x[len(x) - len(own) :]
        if any(p not in (1, s) for p, s in zip(own, aligned, strict=True)):
            raise OpError(
                f"{args.use}: a {fmt_shape(shape)} parameter "
                f"does not broadcast to the {fmt_shape(x)} input"
            )
        return x

    def params(self, args: ParameterArgs, inputs: list[Shape], out: Shape) -> int:
        return math.prod(args.shape)

    def other_ops(self, args: ParameterArgs, inputs: list[Shape], out: Shape) -> int:
        return 0 if args.use == "concat" else numel(out)

    def emit(self, args: ParameterArgs, inputs: list[Shape], out: Shape, inplace: bool) -> Call:
        """The tensor's first value; the enclosing module wraps it in nn.Parameter. Random inits
        start from torch.empty and are filled in place by `init_source` (torchvision's Swin writes
        `nn.init.trunc_normal_(self.table, std=0.02)` so): every factory call honours a
        `torch.device("meta")` context, which torch.normal(mean, std, size) does not."""
        size = tuple(args.shape)
        if args.init in ("normal", "trunc_normal"):
            return Call("torch.empty", (size,))
        if args.init == "constant":
            return Call("torch.full", (size, args.value))
        return Call(f"torch.{args.init}", (size,))

    def init_source(self, args: ParameterArgs, tensor: str) -> str | None:
        """The in-place init of the held tensor (`tensor` is its attribute), or None when `emit`'s
        value is the initial one."""
        spread = ", ".join(
            f"{k}={v!r}"
            for k, v, default in (("mean", args.mean, 0.0), ("std", args.std, 1.0))
            if v != default
        )
        if args.init == "normal":
            return f"nn.init.normal_({tensor}{', ' + spread if spread else ''})"
        if args.init == "trunc_normal":
            return (
                f"nn.init.trunc_normal_({tensor}"
                f"{', ' + spread if spread else ''}, a={args.a!r}, b={args.b!r})"
            )
        return None

    def source(
        self, args: ParameterArgs, inputs: list[str], shapes: list[Shape], inplace: bool
    ) -> str:
        tensor, x = inputs
        if args.use == "add":
            return f"{x} + {tensor}"
        if args.use == "multiply":
            return f"{tensor} * {x}"
        rank = len(shapes[0])
        expanded = f"{tensor}.expand({x}.shape[0], {', '.join(['-1'] * rank)})"
        return f"torch.cat([{expanded}, {x}], {args.dim % rank + 1})"

    def label(self, args: ParameterArgs) -> str:
        return f"parameter {fmt_shape(tuple(args.shape))} ({args.use})"
