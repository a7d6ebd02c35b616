"""Multi-head self-attention on a token sequence (L, D): torch's nn.MultiheadAttention, so that
its keys (in_proj_weight, in_proj_bias, out_proj.weight/bias) are torchvision's ViT's."""

from __future__ import annotations

from pydantic import Field

from archc.ops import register
from archc.ops.base import Args, Autograd, Call, Op, OpError, Shape, Side, fmt_shape, numel


class SelfAttentionArgs(Args):
    heads: int = Field(gt=0, description="attention heads; they split the model dimension D")
    dropout: float = Field(
        0.0, ge=0, le=1, description="dropout on the attention weights (training only)"
    )


@register
class SelfAttention(Op[SelfAttentionArgs]):
    name = "self_attention"
    needs_layout = "tokens"
    aliases = ("mha", "multihead_attention")
    Args = SelfAttentionArgs
    shorthand = "heads"
    autograd = Autograd(
        saves="input", side=(Side(4, "output"),)
    )  # q, k, v projections and the attention output
    colour = "#e4dcf2"
    # no `init:` kind: nn.MultiheadAttention initialises itself (xavier_uniform, zero biases)
    weighted = False
    fresh_output = True
    module_call = "{module}({x}, {x}, {x}, need_weights=False)[0]"
    doc = (
        "Multi-head self-attention over a (L, D) token sequence: "
        "nn.MultiheadAttention(D, heads, batch_first=True) called as "
        "torchvision's ViT does (query = key = value, no weights returned)."
    )

    def infer(self, args: SelfAttentionArgs, inputs: list[Shape], labels: list[str]) -> Shape:
        shape = self.one(inputs)
        if len(shape) != 2:
            raise OpError(
                f"self_attention needs a (L, D) token sequence, got {fmt_shape(shape)}; a "
                "(C, H, W) map becomes one with reshape + permute (ViT's patch embedding)"
            )
        if shape[1] % args.heads:
            raise OpError(f"heads={args.heads} does not divide the model dimension D={shape[1]}")
        return shape

    def params(self, args: SelfAttentionArgs, inputs: list[Shape], out: Shape) -> int:
        d = out[1]
        return 4 * d * d + 4 * d

    def macs(self, args: SelfAttentionArgs, inputs: list[Shape], out: Shape) -> int:
        """q/k/v and output projections (4 L D^2) and the two attention
        products Q K^T and A V (2 L^2 D)."""
        length, d = out
        return 4 * length * d * d + 2 * length * length * d

    def other_ops(self, args: SelfAttentionArgs, inputs: list[Shape], out: Shape) -> int:
        length = out[0]
        return 4 * numel(out) + 3 * args.heads * length * length  # biases; scale, softmax per score

    def largest_param_tensor(self, args: SelfAttentionArgs, params: int, out: Shape) -> int:
        return 3 * out[1] * out[1]  # in_proj_weight

    def workspace(self, args: SelfAttentionArgs, inputs: list[Shape], out: Shape) -> int:
        """q, k, v and the heads' output (4 L D), the scores and probabilities (2 heads L^2)."""
        length = out[0]
        return 4 * numel(out) + 2 * args.heads * length * length

    def emit(self, args: SelfAttentionArgs, inputs: list[Shape], out: Shape, inplace: bool) -> Call:
        kw: dict[str, object] = {"dropout": args.dropout} if args.dropout else {}
        return Call("nn.MultiheadAttention", (out[1], args.heads), {**kw, "batch_first": True})

    def label(self, args: SelfAttentionArgs) -> str:
        return f"self-attention, {args.heads} heads"
