"""A custom-op plugin for archc: `scale`, multiply by a constant (docs/design.md, "Adding an op").

A spec never loads code; the op is there when the user asks for it, either by name:

    PYTHONPATH=examples/plugin_op archc check examples/plugin_op/scaled.yaml --plugin archc_scale_op

(from Python: `archc.load("examples/plugin_op/scaled.yaml", plugins=["archc_scale_op"])`), or by
installing this folder as a package, whose `archc.ops` entry point (pyproject.toml) archc loads
when a spec names an op it does not know:

    pip install examples/plugin_op
    archc check examples/plugin_op/scaled.yaml
"""

from __future__ import annotations

from pydantic import Field

from archc.ops import register
from archc.ops.base import Args, Autograd, Op, numel


class ScaleArgs(Args):
    factor: float = Field(1.0, description="multiplier")


@register
class Scale(Op):
    name = "scale"
    Args = ScaleArgs            # unknown or mistyped arguments become positioned SpecErrors
    shorthand = "factor"        # `- scale: 2.0`
    is_module = False           # a function call in forward, not a child module
    doc = "Multiply by a constant."
    autograd = Autograd(saves="none")  # training memory: x * c keeps nothing for its backward
    colour = "#ffffff"          # diagram fill
    weighted = False            # not a weighted layer: does not count toward depth

    def other_ops(self, args, inputs, out):      # per-element work for reports
        return numel(out)

    def expression(self, args, inputs):          # functional ops: the forward expression
        return f"{inputs[0]} * {args.factor!r}"
