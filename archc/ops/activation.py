"""Element-wise activations. Each is a tiny class; the shared rules live in `Activation`."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from archc.ops import register
from archc.ops.base import A, Args, Autograd, Call, NoArgs, Op, OpError, Shape, fmt_shape, numel


class Activation(Op[A]):
    """Shape-preserving, parameter-free, one op per element."""

    colour = "#ffffff"
    weighted = False

    torch_class: ClassVar[str]

    def other_ops(self, args: A, inputs: list[Shape], out: Shape) -> int:
        return numel(out)

    def torch_kwargs(self, args: A) -> dict[str, object]:
        """The nn class's keyword arguments that differ from its defaults
        (`args` is the op's own Args)."""
        return {}

    def emit(self, args: A, inputs: list[Shape], out: Shape, inplace: bool) -> Call:
        kw = self.torch_kwargs(args)
        if inplace:
            kw["inplace"] = True
        return Call(self.torch_class, (), kw)


@register
class ReLU(Activation):
    name = "relu"
    autograd = Autograd(saves="output")
    torch_class = "nn.ReLU"
    inplace_capable = True
    doc = "max(x, 0)."


@register
class ReLU6(Activation):
    name = "relu6"
    autograd = Autograd(saves="clone_when_inplace")
    torch_class = (
        "nn.ReLU6"  # not in place: PyTorch copies the input for an in-place hardtanh anyway
    )
    doc = "min(max(x, 0), 6) (MobileNet)."


class LeakyReLUArgs(Args):
    negative_slope: float = 0.01


@register
class LeakyReLU(Activation[LeakyReLUArgs]):
    name = "leaky_relu"
    autograd = Autograd(saves="input_when_fresh")
    Args = LeakyReLUArgs
    shorthand = "negative_slope"
    torch_class = "nn.LeakyReLU"
    inplace_capable = True
    doc = "x if x > 0 else negative_slope * x."

    def torch_kwargs(self, args: LeakyReLUArgs) -> dict[str, object]:
        return {"negative_slope": args.negative_slope} if args.negative_slope != 0.01 else {}


class GELUArgs(Args):
    approximate: Literal["none", "tanh"] = "none"


@register
class GELU(Activation[GELUArgs]):
    name = "gelu"
    autograd = Autograd(saves="input")
    Args = GELUArgs
    torch_class = "nn.GELU"
    doc = "Gaussian error linear unit."

    def torch_kwargs(self, args: GELUArgs) -> dict[str, object]:
        return {"approximate": args.approximate} if args.approximate != "none" else {}


@register
class SiLU(Activation):
    name = "silu"
    autograd = Autograd(saves="input")
    aliases = ("swish",)
    torch_class = "nn.SiLU"
    doc = "x * sigmoid(x)."


@register
class Hardswish(Activation):
    name = "hardswish"
    autograd = Autograd(saves="input")
    torch_class = "nn.Hardswish"
    doc = "x * relu6(x + 3) / 6 (MobileNetV3); not swish."


@register
class Hardsigmoid(Activation):
    name = "hardsigmoid"
    autograd = Autograd(saves="input")
    torch_class = "nn.Hardsigmoid"
    doc = "relu6(x + 3) / 6 (MobileNetV3's SE gate); not sigmoid."


@register
class Mish(Activation):
    name = "mish"
    autograd = Autograd(saves="input")
    torch_class = "nn.Mish"
    doc = "x * tanh(softplus(x))."


@register
class Sigmoid(Activation):
    name = "sigmoid"
    autograd = Autograd(saves="output")
    torch_class = "nn.Sigmoid"
    doc = "1 / (1 + exp(-x)) (LeNet's activation; SE gates)."


@register
class Tanh(Activation):
    name = "tanh"
    autograd = Autograd(saves="output")
    torch_class = "nn.Tanh"
    doc = "Hyperbolic tangent."


class SoftmaxArgs(Args):
    dim: int = Field(0, description="dimension without the batch: 0 is channels/features")


@register
class Softmax(Activation[SoftmaxArgs]):
    name = "softmax"
    autograd = Autograd(saves="output")
    Args = SoftmaxArgs
    shorthand = "dim"
    torch_class = "nn.Softmax"
    doc = "Softmax over one dimension (channels/features by default)."

    def infer(self, args: SoftmaxArgs, inputs: list[Shape], labels: list[str]) -> Shape:
        shape = self.one(inputs)
        if not -len(shape) <= args.dim < len(shape):
            raise OpError(f"dim={args.dim} is out of range for a {fmt_shape(shape)} input")
        return shape

    def torch_kwargs(self, args: SoftmaxArgs) -> dict[str, object]:
        return {"dim": args.dim + 1 if args.dim >= 0 else args.dim}


__all__ = ["Activation", "NoArgs"]
