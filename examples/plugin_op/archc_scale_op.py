"""A custom-op plugin for archc (docs/design.md, "Adding an op"), with three ops:

- `scale`: multiply by a constant, a function in forward (no parameters);
- `affine`: a learned per-channel scale and shift, a module class of the plugin's own (`Affine`)
  holding two nn.Parameters;
- `gain`: one learned scalar the enclosing module holds itself as an nn.Parameter (`owns_tensor`),
  like archc's `parameter` op.

The generated model, and the file `archc export --to python` writes, contain `Affine`'s source
(`module_source`), so the exported file runs with PyTorch alone: neither archc nor this plugin is
imported there. A spec never loads code; the ops are there when the user asks for them, either by
name:

    PYTHONPATH=examples/plugin_op archc check examples/plugin_op/scaled.yaml --plugin archc_scale_op

(from Python: `archc.load("examples/plugin_op/scaled.yaml", plugins=["archc_scale_op"])`), or by
installing this folder as a package, whose `archc.ops` entry point (pyproject.toml) archc loads
when a spec names an op it does not know:

    pip install examples/plugin_op
    archc check examples/plugin_op/scaled.yaml
"""

from __future__ import annotations

import inspect

import torch
from pydantic import Field
from torch import nn

from archc.ops import register
from archc.ops.base import Args, Autograd, Call, Op, OpError, numel


class ScaleArgs(Args):
    factor: float = Field(1.0, description="multiplier")


@register
class Scale(Op[ScaleArgs]):
    name = "scale"
    Args = ScaleArgs  # unknown or mistyped arguments become positioned SpecErrors
    shorthand = "factor"  # `- scale: 2.0`
    is_module = False  # a function call in forward, not a child module
    doc = "Multiply by a constant."
    autograd = Autograd(saves="none")  # training memory: x * c keeps nothing for its backward
    colour = "#ffffff"  # diagram fill
    weighted = False  # not a weighted layer: does not count toward depth

    def other_ops(self, args, inputs, out):  # per-element work for reports
        return numel(out)

    def expression(self, args, inputs):  # functional ops: the forward expression
        return f"{inputs[0]} * {args.factor!r}"


class Affine(nn.Module):
    """A learned scale and shift per channel of a (C, ...) input: a
    norm layer without statistics."""

    def __init__(self, channels: int, rank: int, init_scale: float = 1.0):
        super().__init__()
        shape = (channels,) + (1,) * (rank - 1)  # broadcasts over the positions after the channels
        self.weight = nn.Parameter(torch.full(shape, init_scale))
        self.bias = nn.Parameter(torch.zeros(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight + self.bias


class AffineArgs(Args):
    init_scale: float = Field(1.0, description="the scale's first value")


@register
class AffineOp(Op[AffineArgs]):
    name = "affine"
    Args = AffineArgs
    shorthand = "init_scale"
    doc = (
        "A learned scale and shift per channel (the "
        "plugin's own module class, keys weight and bias)."
    )
    # The class's source is pasted into the generated file: the model archc builds runs it, and the
    # exported file needs PyTorch only (the class must use only torch, nn and Python builtins).
    module_source = inspect.getsource(Affine)
    autograd = Autograd(saves="input")  # x * weight keeps x for the weight's gradient
    colour = "#e5f2e5"
    weighted = False
    fresh_output = True

    def infer(self, args, inputs, labels):
        shape = self.one(inputs)
        if not shape:
            raise OpError("affine needs a (C, ...) input")
        return shape

    def params(self, args, inputs, out):  # what the module holds: counted, and checked at build
        return 2 * out[0]

    def other_ops(self, args, inputs, out):  # a multiply and an add per element
        return 2 * numel(out)

    def emit(
        self, args, inputs, out, inplace
    ):  # modules: the constructor call, by the class's name
        return Call(
            "Affine",
            (out[0], len(out)),
            {"init_scale": args.init_scale} if args.init_scale != 1.0 else {},
        )


class GainArgs(Args):
    value: float = Field(1.0, description="the gain's first value")


@register
class Gain(Op[GainArgs]):
    name = "gain"
    Args = GainArgs
    shorthand = "value"
    doc = (
        "Multiply by one learned scalar, held by the enclosing "
        "module as an nn.Parameter named after the item."
    )
    owns_tensor = True  # no child module: the parameter is an attribute, `self.<name>`
    autograd = Autograd(saves="input")
    colour = "#fdf1d6"
    weighted = False

    def params(self, args, inputs, out):
        return 1

    def other_ops(self, args, inputs, out):
        return numel(out)

    def emit(
        self, args, inputs, out, inplace
    ):  # the tensor's first value (wrapped in nn.Parameter)
        return Call("torch.full", ((1,), args.value))

    def source(
        self, args, inputs, shapes, inplace
    ):  # inputs[0] is the attribute, inputs[1] the input
        return f"{inputs[1]} * {inputs[0]}"
