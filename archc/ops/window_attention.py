"""Swin Transformer's two layers on a channels-last (H, W, C) map: shifted-window multi-head
self-attention with relative position bias (v1: a learned bias table; v2: cosine attention, a
learned logit scale and the continuous position bias MLP) and patch merging (v1: norm, then the
2x2 -> 1 reduction; v2: the reduction, then norm).

Both are modules of generated source (`module_source`, pasted into the exported file) whose
state_dict keys, buffers included, are torchvision's, so its Swin weights load strictly. MACs count
what FlopCounterMode counts: the q/k/v and output projections, both attention products on the
padded windows, and (v2) the position-bias MLP, run once per forward.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

from pydantic import Field

from archc.ops import register
from archc.ops.base import Args, Autograd, Call, Op, OpError, Shape, Side, fmt_shape, numel

IntOrPair = int | list[int]
CPB_HIDDEN = 512  # width of torchvision's continuous position bias MLP (Swin V2)

WINDOW_ATTENTION_SOURCE = f'''def shifted_window_attention(
    x: torch.Tensor,
    qkv_weight: torch.Tensor,
    qkv_bias: torch.Tensor | None,
    proj_weight: torch.Tensor,
    proj_bias: torch.Tensor | None,
    position_bias: torch.Tensor,
    window_size: list[int],
    shift_size: list[int],
    num_heads: int,
    attention_dropout: float,
    dropout: float,
    training: bool,
    logit_scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """torchvision's shifted_window_attention: multi-head self-attention inside the (shifted)
    windows of an (N, H, W, C) map, padded to whole windows; cosine attention given a logit
    scale."""
    b, h, w, c = x.shape
    wh, ww = window_size[0], window_size[1]
    x = nn.functional.pad(x, (0, 0, 0, (ww - w % ww) % ww, 0, (wh - h % wh) % wh))
    _, pad_h, pad_w, _ = x.shape
    sh = 0 if wh >= pad_h else shift_size[0]  # a window as large as the map: nothing to shift
    sw = 0 if ww >= pad_w else shift_size[1]
    if sh + sw > 0:
        x = torch.roll(x, shifts=(-sh, -sw), dims=(1, 2))
    num_windows = (pad_h // wh) * (pad_w // ww)
    x = x.view(b, pad_h // wh, wh, pad_w // ww, ww, c)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b * num_windows, wh * ww, c)
    if logit_scale is not None and qkv_bias is not None:
        qkv_bias = qkv_bias.clone()
        length = qkv_bias.numel() // 3
        qkv_bias[length : 2 * length].zero_()
    qkv = nn.functional.linear(x, qkv_weight, qkv_bias)
    qkv = qkv.reshape(x.size(0), x.size(1), 3, num_heads, c // num_heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    if logit_scale is not None:
        k = nn.functional.normalize(k, dim=-1)
        attn = nn.functional.normalize(q, dim=-1) @ k.transpose(-2, -1)
        attn = attn * torch.clamp(logit_scale, max={math.log(100.0)!r}).exp()
    else:
        q = q * (c // num_heads) ** -0.5
        attn = q.matmul(k.transpose(-2, -1))
    attn = attn + position_bias
    if sh + sw > 0:
        mask = x.new_zeros((pad_h, pad_w))
        count = 0
        for hs in ((0, -wh), (-wh, -sh), (-sh, pad_h)):
            for ws in ((0, -ww), (-ww, -sw), (-sw, pad_w)):
                mask[hs[0] : hs[1], ws[0] : ws[1]] = count
                count += 1
        mask = mask.view(pad_h // wh, wh, pad_w // ww, ww)
        mask = mask.permute(0, 2, 1, 3).reshape(num_windows, wh * ww)
        mask = mask.unsqueeze(1) - mask.unsqueeze(2)
        mask = mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)
        attn = attn.view(x.size(0) // num_windows, num_windows, num_heads, x.size(1), x.size(1))
        attn = attn + mask.unsqueeze(1).unsqueeze(0)
        attn = attn.view(-1, num_heads, x.size(1), x.size(1))
    attn = nn.functional.softmax(attn, dim=-1)
    attn = nn.functional.dropout(attn, p=attention_dropout, training=training)
    x = attn.matmul(v).transpose(1, 2).reshape(x.size(0), x.size(1), c)
    x = nn.functional.linear(x, proj_weight, proj_bias)
    x = nn.functional.dropout(x, p=dropout, training=training)
    x = x.view(b, pad_h // wh, pad_w // ww, wh, ww, c)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, pad_h, pad_w, c)
    if sh + sw > 0:
        x = torch.roll(x, shifts=(sh, sw), dims=(1, 2))
    return x[:, :h, :w, :].contiguous()


def relative_position_index(window_size: list[int]) -> torch.Tensor:
    """For each pair of positions in a window, the row of their offset in a (2Wh-1)(2Ww-1) table."""
    coords = torch.stack(torch.meshgrid(torch.arange(window_size[0]), torch.arange(window_size[1]),
                                        indexing="ij")).flatten(1)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
    relative[:, :, 0] += window_size[0] - 1
    relative[:, :, 1] += window_size[1] - 1
    relative[:, :, 0] *= 2 * window_size[1] - 1
    return relative.sum(-1).flatten()


class ShiftedWindowAttention(nn.Module):
    """torchvision's ShiftedWindowAttention (Swin V1): window attention with a learned relative
    position bias table; the same keys, so its weights load."""

    def __init__(self, dim: int, window_size: list[int], shift_size: list[int], num_heads: int,
                 qkv_bias: bool = True, proj_bias: bool = True, attention_dropout: float = 0.0,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.window_size = window_size
        self.shift_size = shift_size
        self.num_heads = num_heads
        self.attention_dropout = attention_dropout
        self.dropout = dropout
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        table = torch.zeros((2 * window_size[0] - 1) * (2 * window_size[1] - 1), num_heads)
        self.relative_position_bias_table = nn.Parameter(nn.init.trunc_normal_(table, std=0.02))
        self.register_buffer("relative_position_index", relative_position_index(window_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.window_size[0] * self.window_size[1]
        bias = self.relative_position_bias_table[self.relative_position_index]
        bias = bias.view(n, n, -1).permute(2, 0, 1).contiguous().unsqueeze(0)
        return shifted_window_attention(x, self.qkv.weight, self.qkv.bias, self.proj.weight,
                                        self.proj.bias, bias, self.window_size, self.shift_size,
                                        self.num_heads, self.attention_dropout, self.dropout,
                                        self.training)


class ShiftedWindowAttentionV2(nn.Module):
    """torchvision's ShiftedWindowAttentionV2 (Swin V2): cosine window attention with a learned
    logit scale and a continuous position bias from an MLP over log-spaced offsets."""

    def __init__(self, dim: int, window_size: list[int], shift_size: list[int], num_heads: int,
                 qkv_bias: bool = True, proj_bias: bool = True, attention_dropout: float = 0.0,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.window_size = window_size
        self.shift_size = shift_size
        self.num_heads = num_heads
        self.attention_dropout = attention_dropout
        self.dropout = dropout
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        self.logit_scale = nn.Parameter(torch.log(10 * torch.ones((num_heads, 1, 1))))
        self.cpb_mlp = nn.Sequential(nn.Linear(2, {CPB_HIDDEN}), nn.ReLU(inplace=True),
                                     nn.Linear({CPB_HIDDEN}, num_heads, bias=False))
        offsets = [torch.arange(-(size - 1), size, dtype=torch.float32) for size in window_size]
        table = torch.stack(torch.meshgrid(offsets[0], offsets[1], indexing="ij"))
        table = table.permute(1, 2, 0).contiguous().unsqueeze(0)
        table[:, :, :, 0] /= window_size[0] - 1
        table[:, :, :, 1] /= window_size[1] - 1
        table *= 8
        table = torch.sign(table) * torch.log2(torch.abs(table) + 1.0) / 3.0
        self.register_buffer("relative_coords_table", table)
        self.register_buffer("relative_position_index", relative_position_index(window_size))
        if qkv_bias:
            with torch.no_grad():
                self.qkv.bias[dim : 2 * dim].zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.window_size[0] * self.window_size[1]
        bias = self.cpb_mlp(self.relative_coords_table).view(-1, self.num_heads)
        bias = bias[self.relative_position_index].view(n, n, -1).permute(2, 0, 1).contiguous()
        bias = 16 * torch.sigmoid(bias.unsqueeze(0))
        return shifted_window_attention(x, self.qkv.weight, self.qkv.bias, self.proj.weight,
                                        self.proj.bias, bias, self.window_size, self.shift_size,
                                        self.num_heads, self.attention_dropout, self.dropout,
                                        self.training, self.logit_scale)'''

PATCH_MERGING_SOURCE = '''def patch_merging_pad(x: torch.Tensor) -> torch.Tensor:
    """Each 2x2 patch of an (N, H, W, C) map, odd sizes padded, as one position of 4C channels."""
    h, w = x.shape[-3], x.shape[-2]
    x = nn.functional.pad(x, (0, 0, 0, w % 2, 0, h % 2))
    return torch.cat([x[..., 0::2, 0::2, :], x[..., 1::2, 0::2, :], x[..., 0::2, 1::2, :],
                      x[..., 1::2, 1::2, :]], -1)


class PatchMerging(nn.Module):
    """torchvision's PatchMerging (Swin V1): LayerNorm over the 4C channels, then the reduction."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reduction(self.norm(patch_merging_pad(x)))


class PatchMergingV2(nn.Module):
    """torchvision's PatchMergingV2 (Swin V2): the reduction, then LayerNorm over the 2C
    channels."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(2 * dim, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.reduction(patch_merging_pad(x)))'''


def channels_last(op: str, shape: Shape) -> Shape:
    """The (H, W, C) input of a Swin layer, or an OpError saying how to get one."""
    if len(shape) != 3:
        raise OpError(
            f"{op} needs a channels-last (H, W, C) map, got {fmt_shape(shape)}; "
            f"a (C, H, W) map becomes one with 'permute: [1, 2, 0]'"
        )
    return shape


def pair(value: IntOrPair, what: str) -> tuple[int, int]:
    """An int for both spatial dims, or [height, width]."""
    values = (value, value) if isinstance(value, int) else tuple(value)
    if len(values) != 2:
        raise OpError(f"{what} takes an int or [height, width], got {value}")
    return values


class WindowAttentionArgs(Args):
    heads: int = Field(gt=0, description="attention heads; they split the channels C")
    window: IntOrPair = Field(
        description="window size, an int or [height, width] (Swin-T: 7, Swin V2-T: 8)"
    )
    shift: IntOrPair = Field(
        0,
        description="cyclic shift of the windows, an int or [height, width], each below the "
        "window (Swin's odd blocks: window // 2); ignored along a dimension where "
        "one window covers the padded map",
    )
    qkv_bias: bool = Field(
        True, description="bias of the q/k/v projection (v2 zeroes and ignores its k part)"
    )
    proj_bias: bool = Field(True, description="bias of the output projection")
    attention_dropout: float = Field(
        0.0, ge=0, le=1, description="dropout on the attention weights (training)"
    )
    dropout: float = Field(0.0, ge=0, le=1, description="dropout on the output (training)")


class Windows:
    """The static facts of one window attention: window, effective shift and padded map size."""

    def __init__(self, op: str, args: WindowAttentionArgs, shape: Shape, min_window: int) -> None:
        height, width, channels = channels_last(op, shape)
        self.window = pair(args.window, "window")
        shift = pair(args.shift, "shift")
        if min(self.window) < min_window:
            why = " (its position bias divides offsets by window - 1)" if min_window > 1 else ""
            raise OpError(
                f"{op} needs a window of at least {min_window} in each dimension{why}, "
                f"got {list(self.window)}"
            )
        if any(not 0 <= s < w for s, w in zip(shift, self.window, strict=True)):
            raise OpError(
                f"shift {list(shift)} must lie in 0 .. window - 1 for window {list(self.window)}"
            )
        if channels % args.heads:
            raise OpError(f"heads={args.heads} does not divide the {channels} channels")
        self.padded = tuple(
            -(-size // w) * w for size, w in zip((height, width), self.window, strict=True)
        )
        self.tokens = self.padded[0] * self.padded[1]  # positions attended, padding included
        self.size = self.window[0] * self.window[1]  # positions per window
        self.offsets = (2 * self.window[0] - 1) * (2 * self.window[1] - 1)  # bias table rows


class WindowAttention(Op[WindowAttentionArgs]):
    """The shared rules of both versions: shape, projections, attention products, emitter."""

    needs_layout = "channels_last"
    Args = WindowAttentionArgs
    colour = "#e4dcf2"
    weighted = False  # its projections are inside; the spec's linear init reaches them
    fresh_output = True
    module_source = WINDOW_ATTENTION_SOURCE
    target: ClassVar[str]
    min_window: ClassVar[int] = 1
    score_copies: ClassVar[int] = 3  # scores, biased (and masked) scores, probabilities

    def windows(self, args: WindowAttentionArgs, shape: Shape) -> Windows:
        return Windows(self.name, args, shape, self.min_window)

    def infer(self, args: WindowAttentionArgs, inputs: list[Shape], labels: list[str]) -> Shape:
        shape = self.one(inputs)
        self.windows(args, shape)
        return shape

    def projections(self, args: WindowAttentionArgs, c: int) -> int:
        return 4 * c * c + (3 * c if args.qkv_bias else 0) + (c if args.proj_bias else 0)

    def buffers(self, args: WindowAttentionArgs, inputs: list[Shape], out: Shape) -> int:
        win = self.windows(args, out)
        return win.size * win.size  # relative_position_index

    def int64_buffers(self, args: WindowAttentionArgs, buffers: int) -> int:
        window = pair(args.window, "window")
        return (window[0] * window[1]) ** 2  # relative_position_index

    def macs(self, args: WindowAttentionArgs, inputs: list[Shape], out: Shape) -> int:
        """q/k/v and output projections (4 T C^2) and the products Q K^T and A V (2 T N C) over
        the T padded positions in windows of N."""
        c, win = out[2], self.windows(args, out)
        return 4 * win.tokens * c * c + 2 * win.tokens * win.size * c

    def other_ops(self, args: WindowAttentionArgs, inputs: list[Shape], out: Shape) -> int:
        win = self.windows(args, out)
        scores = args.heads * win.tokens * win.size
        return 4 * win.tokens * out[2] + 3 * scores  # biases; scale, bias and softmax per score

    def largest_param_tensor(self, args: WindowAttentionArgs, params: int, out: Shape) -> int:
        return 3 * out[2] * out[2]  # qkv.weight

    def workspace(self, args: WindowAttentionArgs, inputs: list[Shape], out: Shape) -> int:
        """The padded windows, q/k/v, the scaled q and the heads' output before the projection
        (6 T C over the T padded positions), and the forms of the scores alive together, heads T N
        each."""
        win = self.windows(args, out)
        return 6 * win.tokens * out[2] + self.score_copies * args.heads * win.tokens * win.size

    def emit(
        self, args: WindowAttentionArgs, inputs: list[Shape], out: Shape, inplace: bool
    ) -> Call:
        defaults = {"qkv_bias": True, "proj_bias": True, "attention_dropout": 0.0, "dropout": 0.0}
        kw = {
            key: getattr(args, key)
            for key, default in defaults.items()
            if getattr(args, key) != default
        }
        window = list(self.windows(args, out).window)
        return Call(self.target, (out[2], window, list(pair(args.shift, "shift")), args.heads), kw)

    def label(self, args: WindowAttentionArgs) -> str:
        shift = pair(args.shift, "shift")
        shifted = f", shift {'x'.join(map(str, shift))}" if any(shift) else ""
        window = "x".join(map(str, pair(args.window, "window")))
        return f"{self.name.replace('_', ' ')} {window}, {args.heads} heads{shifted}"


@register
class ShiftedWindowAttentionOp(WindowAttention):
    name = "shifted_window_attention"
    aliases = ("window_attention", "swin_attention")
    target = "ShiftedWindowAttention"
    # the input, the windows, q/k/v, the scaled q, the softmax output (the scores of a 7x7 window
    # with Swin's heads are about 1.5 outputs) and the attention output before the projection:
    # +3.7% on a measured CPU step of swin_t, +4.3% on a small Swin
    autograd = Autograd(saves="input", side=(Side(6, "output"),))
    doc = (
        "Shifted-window multi-head self-attention on a channels-last (H, W, C) map with a "
        "learned relative position bias table: torchvision's ShiftedWindowAttention (Swin), the "
        "same keys and buffers; the map is padded to whole windows, shifted windows are masked."
    )

    def params(self, args: WindowAttentionArgs, inputs: list[Shape], out: Shape) -> int:
        return self.projections(args, out[2]) + self.windows(args, out).offsets * args.heads


@register
class ShiftedWindowAttentionV2Op(WindowAttention):
    name = "shifted_window_attention_v2"
    aliases = ("window_attention_v2", "swin_attention_v2")
    target = "ShiftedWindowAttentionV2"
    min_window = 2
    score_copies = 4  # cosine scores, scaled, biased (and masked), probabilities
    # as v1, plus the normalised q and k and the scores both before and after the softmax (about
    # two outputs each for Swin V2's 8x8 windows): +1.8% on a measured CPU step of swin_v2_t, -6%
    # where the windows pad the map
    autograd = Autograd(saves="input", side=(Side(11, "output"),))
    doc = (
        "Shifted-window cosine attention on a channels-last (H, W, C) map with a learned logit "
        "scale per head and the continuous position bias MLP (cpb_mlp): torchvision's "
        "ShiftedWindowAttentionV2 (Swin V2), the same keys and buffers."
    )

    def params(self, args: WindowAttentionArgs, inputs: list[Shape], out: Shape) -> int:
        mlp = 3 * CPB_HIDDEN + CPB_HIDDEN * args.heads
        return self.projections(args, out[2]) + args.heads + mlp  # and the logit scales

    def buffers(self, args: WindowAttentionArgs, inputs: list[Shape], out: Shape) -> int:
        coords = 2 * self.windows(args, out).offsets  # relative_coords_table
        return super().buffers(args, inputs, out) + coords

    def macs(self, args: WindowAttentionArgs, inputs: list[Shape], out: Shape) -> int:
        """v1's, plus the position-bias MLP over the (2Wh-1)(2Ww-1) offsets, run once per forward
        (FlopCounterMode and torchvision's published GMACs count it once per image at batch 1)."""
        mlp = self.windows(args, out).offsets * (2 * CPB_HIDDEN + CPB_HIDDEN * args.heads)
        return super().macs(args, inputs, out) + mlp


class PatchMergingArgs(Args):
    norm: Literal["before", "after"] = Field(
        "before",
        description="LayerNorm before the reduction, over 4C (Swin), or after it, over "
        "2C (Swin V2)",
    )
    eps: float = Field(1e-5, gt=0, description="the LayerNorm's eps")


@register
class PatchMergingOp(Op[PatchMergingArgs]):
    name = "patch_merging"
    needs_layout = "channels_last"
    Args = PatchMergingArgs
    autograd = Autograd(saves="input", side=(Side(2, "output"), Side(2, "sample", nbytes=4)))
    colour = "#dbe8f6"
    weighted = False
    fresh_output = True
    module_source = PATCH_MERGING_SOURCE
    doc = (
        "Swin's downsampling of a channels-last (H, W, C) map: each 2x2 patch (odd sizes "
        "padded) concatenated to 4C channels, LayerNorm and a bias-free linear reduction to 2C: "
        "torchvision's PatchMerging (norm before) or PatchMergingV2 (norm after), keys "
        "reduction.weight, norm.*."
    )

    def infer(self, args: PatchMergingArgs, inputs: list[Shape], labels: list[str]) -> Shape:
        height, width, channels = channels_last("patch_merging", self.one(inputs))
        return (-(-height // 2), -(-width // 2), 2 * channels)

    def params(self, args: PatchMergingArgs, inputs: list[Shape], out: Shape) -> int:
        c = inputs[0][2]
        return 8 * c * c + 2 * (2 * c if args.norm == "after" else 4 * c)

    def macs(self, args: PatchMergingArgs, inputs: list[Shape], out: Shape) -> int:
        return numel(out) * 4 * inputs[0][2]

    def other_ops(self, args: PatchMergingArgs, inputs: list[Shape], out: Shape) -> int:
        normalised = numel(out) * (1 if args.norm == "after" else 2)
        return 5 * normalised

    def largest_param_tensor(self, args: PatchMergingArgs, params: int, out: Shape) -> int:
        return 2 * out[2] * out[2]  # reduction.weight

    def workspace(self, args: PatchMergingArgs, inputs: list[Shape], out: Shape) -> int:
        """The padded input, the 4C concatenation and (norm before) its normalised copy."""
        h, w, c = inputs[0]
        merged = 2 * numel(out) * (2 if args.norm == "before" else 1)
        return (h + h % 2) * (w + w % 2) * c + merged

    def emit(self, args: PatchMergingArgs, inputs: list[Shape], out: Shape, inplace: bool) -> Call:
        kw: dict[str, object] = {"eps": args.eps} if args.eps != 1e-5 else {}
        target = "PatchMergingV2" if args.norm == "after" else "PatchMerging"
        return Call(target, (inputs[0][2],), kw)

    def label(self, args: PatchMergingArgs) -> str:
        return f"patch merging (norm {args.norm})"
