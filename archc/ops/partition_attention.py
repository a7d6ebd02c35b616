"""MaxViT's multi-axis attention: a (C, H, W) map cut into groups of tokens, attention with a
relative position bias inside each group, and the map put back together.

`partition` turns the map into (G, P, C): G groups of P = size * size tokens. `mode: window`
groups each size x size block of neighbours (block attention); `mode: grid` groups the positions
of a size x size grid spread over the whole map, H/size and W/size apart (grid attention, dilated
and global). `unpartition` is its inverse, back to (C, H, W). Between them the token ops apply:
`layernorm: {dims: 1}`, `linear: {channels_last: true}` and `relative_attention`, torchvision's
RelativePositionalMultiHeadAttention (keys to_qkv, merge, relative_position_bias_table and the
relative_position_index buffer), so torchvision's MaxViT weights load.
"""

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
    Layout,
    Op,
    OpError,
    Shape,
    Side,
    Window,
    fmt_shape,
    layout_text,
    numel,
)

Mode = Literal["window", "grid"]
MODE_DOC = (
    "window: each size x size block of neighbours is a group (block attention); grid: "
    "the positions of a size x size grid spread evenly over the map are a group (grid "
    "attention)"
)


def _check_divides(size: int, height: int, width: int) -> None:
    if height % size or width % size:
        raise OpError(
            f"partition size {size} does not divide the {height}x{width} map; MaxViT "
            f"needs every stage's map divisible by it (an input size that is a multiple "
            f"of 32 x size)"
        )


# What `partition` makes: G groups of L tokens of C features each.
GROUPS: Layout = ("G", "L", "C")


def _check_groups(op: str, layout: Layout, shape: Shape) -> None:
    """Refuse a known layout other than token groups: a (C, H, W) map is not groups of tokens,
    even when its sizes would fit."""
    if layout is not None and len(layout) == len(shape) == 3 and layout != GROUPS:
        raise OpError(
            f"{op} needs (G, P, D) token groups from 'partition', but its input is "
            f"{fmt_shape(shape)} laid out {layout_text(layout)}; 'partition: SIZE' "
            f"cuts a C×H×W map into them"
        )


class PartitionArgs(Args):
    size: int = Field(gt=0, description="partition size: each group is size x size positions")
    mode: Mode = Field("window", description=MODE_DOC)


@register
class Partition(Op[PartitionArgs]):
    name = "partition"
    needs_layout = "channels_first"
    Args = PartitionArgs
    shorthand = "size"
    is_module = False
    autograd = Autograd(saves="none")  # a reshaped copy; its backward needs nothing
    colour = "#ffffff"
    weighted = False
    doc = (
        "Cut a (C, H, W) map into token groups (G, size*size, C) for attention within each "
        "group: MaxViT's window (neighbouring size x size blocks) or grid (a size x size grid "
        "spread over the map) partition; `unpartition` undoes it."
    )

    def infer(self, args: PartitionArgs, inputs: list[Shape], labels: list[str]) -> Shape:
        shape = self.one(inputs)
        if len(shape) != 3:
            raise OpError(f"partition needs a (C, H, W) map, got {fmt_shape(shape)}")
        channels, height, width = shape
        _check_divides(args.size, height, width)
        return (height * width // args.size**2, args.size**2, channels)

    def layout(
        self, args: PartitionArgs, inputs: list[Layout], shapes: list[Shape], out: Shape
    ) -> Layout:
        return GROUPS

    def source(
        self, args: PartitionArgs, inputs: list[str], shapes: list[Shape], inplace: bool
    ) -> str:
        """Written in the partition size only (the map's size comes from the tensor), so that the
        calls of a block at every stage share one class: each spatial dim splits into (blocks,
        offset) for a window, (grid position, offset) for a grid; the groups are the blocks, or
        the offsets (the grid's tokens and groups swapped, as torchvision's SwapAxes does)."""
        x, s = inputs[0], args.size
        if args.mode == "window":
            return (
                f"{x}.unflatten(2, (-1, {s})).unflatten(4, (-1, {s}))"
                f".permute(0, 2, 4, 3, 5, 1).flatten(1, 2).flatten(2, 3)"
            )
        return (
            f"{x}.unflatten(2, ({s}, -1)).unflatten(4, ({s}, -1))"
            f".permute(0, 2, 4, 3, 5, 1).flatten(1, 2).flatten(2, 3).transpose(1, 2)"
        )

    def receptive_window(self, args: PartitionArgs, inputs: list[Shape], out: Shape) -> Window:
        """A token's field is its group's: the window of neighbours, or the grid spread over the
        map (size positions H/size apart), as the attention within the groups sees it. The token
        ops after it keep their shape, so the field passes on to `unpartition`."""
        _, height, width = inputs[0]
        spread = (1, 1) if args.mode == "window" else (height // args.size, width // args.size)
        return Window((args.size, args.size), (Fraction(1), Fraction(1)), spread)

    def label(self, args: PartitionArgs) -> str:
        return f"{args.mode} partition {args.size}x{args.size}"


class UnpartitionArgs(Args):
    size: int = Field(gt=0, description="the partition size the groups were cut with")
    mode: Mode = Field("window", description=MODE_DOC)
    height: int = Field(gt=0, description="height H of the map to rebuild (the partition's input)")
    width: int = Field(gt=0, description="width W of the map to rebuild")


@register
class Unpartition(Op[UnpartitionArgs]):
    name = "unpartition"
    aliases = ("departition",)
    Args = UnpartitionArgs
    shorthand = "size"
    is_module = False
    autograd = Autograd(saves="none")  # a reshaped copy; its backward needs nothing
    colour = "#ffffff"
    weighted = False
    doc = (
        "Put token groups (G, size*size, C) back into the (C, H, W) map they were cut from by "
        "`partition` with the same size and mode (MaxViT's departition)."
    )

    def infer(self, args: UnpartitionArgs, inputs: list[Shape], labels: list[str]) -> Shape:
        shape = self.one(inputs)
        if len(shape) != 3:
            raise OpError(f"unpartition needs (G, P, C) token groups, got {fmt_shape(shape)}")
        groups, tokens, channels = shape
        _check_divides(args.size, args.height, args.width)
        if tokens != args.size**2:
            raise OpError(
                f"groups of {tokens} tokens were not cut with partition size {args.size} "
                f"({args.size**2} tokens)"
            )
        if groups * tokens != args.height * args.width:
            raise OpError(
                f"{groups} groups of {tokens} tokens do not make a "
                f"{args.height}x{args.width} map ({args.height * args.width} positions)"
            )
        return (channels, args.height, args.width)

    def check_layout(self, args: UnpartitionArgs, layout: Layout, shape: Shape) -> None:
        _check_groups(self.name, layout, shape)

    def layout(
        self, args: UnpartitionArgs, inputs: list[Layout], shapes: list[Shape], out: Shape
    ) -> Layout:
        return ("C", "H", "W")

    def source(
        self, args: UnpartitionArgs, inputs: list[str], shapes: list[Shape], inplace: bool
    ) -> str:
        """`partition` backwards: (blocks or offsets, tokens) -> (H, W) split as it cut them; the
        one size from the map is its width in groups (W / size)."""
        x, s, across = inputs[0], args.size, args.width // args.size
        if args.mode == "window":
            return (
                f"{x}.unflatten(2, ({s}, {s})).unflatten(1, (-1, {across}))"
                f".permute(0, 5, 1, 3, 2, 4).flatten(4, 5).flatten(2, 3)"
            )
        return (
            f"{x}.transpose(1, 2).unflatten(2, (-1, {across})).unflatten(1, ({s}, {s}))"
            f".permute(0, 5, 1, 3, 2, 4).flatten(4, 5).flatten(2, 3)"
        )

    def receptive_window(self, args: UnpartitionArgs, inputs: list[Shape], out: Shape) -> Window:
        """Each position is one token back in its place: the field it had (from `partition`)."""
        return Window((1, 1), (Fraction(1), Fraction(1)), (1, 1))

    def label(self, args: UnpartitionArgs) -> str:
        return f"{args.mode} unpartition {args.size}x{args.size}"


# The module relative_attention emits, pasted into the generated source: torchvision's
# RelativePositionalMultiHeadAttention (its keys, its order of operations), TorchScript-compatible.
RELATIVE_ATTENTION_SOURCE = '''class RelativePositionalMultiHeadAttention(nn.Module):
    """Multi-head self-attention within each group of a (B, G, P, D) input, plus a learned bias
    per head and relative offset of two positions of the sqrt(P) x sqrt(P) window (MaxViT)."""

    def __init__(self, feat_dim: int, head_dim: int, max_seq_len: int) -> None:
        super().__init__()
        self.n_heads = feat_dim // head_dim
        self.head_dim = head_dim
        self.size = round(max_seq_len**0.5)
        self.max_seq_len = max_seq_len
        self.to_qkv = nn.Linear(feat_dim, self.n_heads * self.head_dim * 3)
        self.scale_factor = feat_dim**-0.5
        self.merge = nn.Linear(self.head_dim * self.n_heads, feat_dim)
        self.relative_position_bias_table = nn.Parameter(
            torch.empty(((2 * self.size - 1) ** 2, self.n_heads), dtype=torch.float32)
        )
        # index of the (dy, dx) offset between positions i and j of the window into the table
        steps = torch.arange(self.size)
        coords = torch.flatten(torch.stack(torch.meshgrid([steps, steps], indexing="ij")), 1)
        offsets = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + self.size - 1
        index = offsets[:, :, 0] * (2 * self.size - 1) + offsets[:, :, 1]
        self.register_buffer("relative_position_index", index)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, g, p, d = x.shape
        h, dh = self.n_heads, self.head_dim
        q, k, v = torch.chunk(self.to_qkv(x), 3, dim=-1)
        q = q.reshape(b, g, p, h, dh).permute(0, 1, 3, 2, 4)
        k = k.reshape(b, g, p, h, dh).permute(0, 1, 3, 2, 4)
        v = v.reshape(b, g, p, h, dh).permute(0, 1, 3, 2, 4)
        k = k * self.scale_factor
        scores = torch.einsum("B G H I D, B G H J D -> B G H I J", q, k)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(self.max_seq_len, self.max_seq_len, -1).permute(2, 0, 1)
        attention = torch.softmax(scores + bias.contiguous().unsqueeze(0), dim=-1)
        out = torch.einsum("B G H I J, B G H J D -> B G H I D", attention, v)
        out = out.permute(0, 1, 3, 2, 4).reshape(b, g, p, d)
        return self.merge(out)'''


class RelativeAttentionArgs(Args):
    head_dim: int = Field(gt=0, description="features per head; heads split the token dimension D")


@register
class RelativeAttention(Op[RelativeAttentionArgs]):
    name = "relative_attention"
    Args = RelativeAttentionArgs
    shorthand = "head_dim"
    # the input (for to_qkv's gradient); besides: the heads' contiguous copies of q, scaled k and
    # v (the matmuls' operands), the merged heads (merge's input) and the softmax output, P /
    # head_dim outputs' worth (49 / 32 in MaxViT-T): 5 outputs' worth, within 1% of a measured
    # MaxViT-T training step (tests/test_memory.py checks a small MaxViT)
    autograd = Autograd(saves="input", side=(Side(5, "output"),))
    colour = "#e4dcf2"
    weighted = False  # no `init:` kind of its own; to_qkv and merge are nn.Linear (the linear rule)
    fresh_output = True
    module_source = RELATIVE_ATTENTION_SOURCE
    doc = (
        "Multi-head self-attention within each group of (G, P, D) tokens (from `partition`) "
        "with a learned bias per head and relative offset of the sqrt(P) x sqrt(P) window: "
        "torchvision's RelativePositionalMultiHeadAttention (MaxViT), keys to_qkv, merge, "
        "relative_position_bias_table and the relative_position_index buffer."
    )

    @staticmethod
    def window(tokens: int) -> int:
        side = math.isqrt(tokens)
        if side * side != tokens:
            raise OpError(
                f"relative_attention needs square windows: {tokens} tokens per group "
                f"is not size x size"
            )
        return side

    def infer(self, args: RelativeAttentionArgs, inputs: list[Shape], labels: list[str]) -> Shape:
        shape = self.one(inputs)
        if len(shape) != 3:
            raise OpError(
                f"relative_attention needs (G, P, D) token groups, got "
                f"{fmt_shape(shape)}; a (C, H, W) map becomes them with 'partition'"
            )
        self.window(shape[1])
        if shape[2] % args.head_dim:
            raise OpError(
                f"head_dim={args.head_dim} does not divide the token dimension D={shape[2]}"
            )
        return shape

    def check_layout(self, args: RelativeAttentionArgs, layout: Layout, shape: Shape) -> None:
        _check_groups(self.name, layout, shape)

    def heads(self, args: RelativeAttentionArgs, out: Shape) -> int:
        return out[2] // args.head_dim

    def params(self, args: RelativeAttentionArgs, inputs: list[Shape], out: Shape) -> int:
        d = out[2]
        table = (2 * self.window(out[1]) - 1) ** 2 * self.heads(args, out)
        return 4 * d * d + 4 * d + table  # to_qkv, merge, bias table

    def buffers(self, args: RelativeAttentionArgs, inputs: list[Shape], out: Shape) -> int:
        return out[1] * out[1]  # relative_position_index

    def int64_buffers(self, args: RelativeAttentionArgs, buffers: int) -> int:
        return buffers  # relative_position_index is int64

    def macs(self, args: RelativeAttentionArgs, inputs: list[Shape], out: Shape) -> int:
        """to_qkv and merge (4 G P D^2), the attention products Q K^T and A V (G P^2 D each).

        A product that contracts a dimension of size 1 (head_dim 1 for Q K^T, one token for A V)
        is an element-wise multiply in torch's einsum, not a matrix product: FlopCounterMode, and
        so torchvision's published figures, leave it out, and so does this count."""
        groups, tokens, d = out
        product = groups * tokens * tokens * d
        return 4 * groups * tokens * d * d + product * ((args.head_dim > 1) + (tokens > 1))

    def other_ops(self, args: RelativeAttentionArgs, inputs: list[Shape], out: Shape) -> int:
        groups, tokens, _ = out
        scores = groups * self.heads(args, out) * tokens * tokens
        return 5 * numel(out) + 4 * scores  # biases, k's scale; bias add and softmax per score

    def largest_param_tensor(self, args: RelativeAttentionArgs, params: int, out: Shape) -> int:
        return 3 * out[2] * out[2]  # to_qkv.weight

    def workspace(self, args: RelativeAttentionArgs, inputs: list[Shape], out: Shape) -> int:
        """q, k, v (3 outputs' worth), the merged heads (1), and the scores, biased scores and
        probabilities, G heads P^2 each, alive together in forward."""
        groups, tokens, _ = out
        return 4 * numel(out) + 3 * groups * self.heads(args, out) * tokens * tokens

    def emit(
        self, args: RelativeAttentionArgs, inputs: list[Shape], out: Shape, inplace: bool
    ) -> Call:
        return Call("RelativePositionalMultiHeadAttention", (out[2], args.head_dim, out[1]))

    def label(self, args: RelativeAttentionArgs) -> str:
        return f"relative attention, head dim {args.head_dim}"
