"""Tensor manipulation: reshape, unflatten, permute, transpose, slice, select, roll, channel
shuffle, spatial pad and mean, the plumbing of ShuffleNet, ConvNeXt, ViT and Swin.

Dimensions are counted without the batch (0 is the first dimension after it) and may be negative
(-1 is the last), as everywhere in a spec. Each op is a function call in `forward`: it owns no
module, adds no state_dict key and takes no index in nn.Sequential numbering.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from archc.ops import register
from archc.ops.base import (
    A,
    Args,
    Autograd,
    Layout,
    Op,
    OpError,
    Shape,
    default_layout,
    fmt_shape,
    numel,
)

IntOrList = int | list[int]
MAX_OUTPUTS = 4_096  # outputs of one split or chunk (the default --max-repeat)


def axis(dim: int, shape: Shape, what: str = "dim") -> int:
    """`dim` as an index into `shape` (negative counts from the end), or an OpError."""
    rank = len(shape)
    if not -rank <= dim < rank:
        raise OpError(
            f"{what}={dim} is out of range for a {fmt_shape(shape)} input "
            f"(dimensions 0..{rank - 1} or -{rank}..-1, without the batch)"
        )
    return dim % rank


def axes(dims: IntOrList, shape: Shape, what: str = "dim") -> tuple[int, ...]:
    """Several dims, each once."""
    values = tuple(axis(d, shape, what) for d in ([dims] if isinstance(dims, int) else dims))
    if len(set(values)) != len(values):
        raise OpError(f"{what} names a dimension twice: {dims}")
    return values


def without(layout: Layout, dims: tuple[int, ...]) -> Layout:
    """The layout once `dims` are reduced away (the features left of a token are flat features)."""
    if layout is None:
        return None
    kept = tuple(a for i, a in enumerate(layout) if i not in dims)
    return ("F",) if kept == ("C",) else kept or None


def batch_index(x: str, dim: int, index: str) -> str:
    """`x[:, :, index]`: `index` at dimension `dim` (without the batch) of `x`."""
    return f"{x}[{', '.join([':'] * (dim + 1) + [index])}]"


class Functional(Op[A]):
    """A parameter-free function of one tensor, written into `forward`."""

    colour = "#ffffff"
    weighted = False

    is_module = False


class ReshapeArgs(Args):
    shape: list[int] = Field(
        min_length=1, description="the new shape without the batch; one entry may be -1"
    )


@register
class Reshape(Functional[ReshapeArgs]):
    name = "reshape"
    autograd = Autograd(saves="none", view=True, pass_through=True)
    aliases = ("view",)
    Args = ReshapeArgs
    shorthand = "shape"
    doc = (
        "Reshape without the batch, e.g. (768, 14, 14) "
        "-> (768, 196); one entry may be -1 (inferred)."
    )

    def infer(self, args: ReshapeArgs, inputs: list[Shape], labels: list[str]) -> Shape:
        shape = self.one(inputs)
        total = numel(shape)
        unknown = [i for i, d in enumerate(args.shape) if d == -1]
        if len(unknown) > 1 or any(d == 0 or d < -1 for d in args.shape):
            raise OpError(f"shape {args.shape} must be positive sizes with at most one -1")
        known = math.prod(d for d in args.shape if d != -1)
        if unknown and total % known == 0:
            out = list(args.shape)
            out[unknown[0]] = total // known
            return tuple(out)
        if known != total or unknown:
            raise OpError(f"cannot reshape {fmt_shape(shape)} ({total:,} elements) to {args.shape}")
        return tuple(args.shape)

    def layout(
        self, args: ReshapeArgs, inputs: list[Layout], shapes: list[Shape], out: Shape
    ) -> Layout:
        """Only a default layout stays known (C×H×W -> C×L); any other
        reshape's meaning is the user's."""
        if out == shapes[0]:
            return inputs[0]
        return default_layout(len(out)) if inputs[0] == default_layout(len(shapes[0])) else None

    def expression(self, args: ReshapeArgs, inputs: list[str]) -> str:
        x = inputs[0]
        return f"{x}.reshape({x}.shape[0], {', '.join(str(d) for d in args.shape)})"

    def label(self, args: ReshapeArgs) -> str:
        return f"reshape {fmt_shape(tuple(args.shape))}"


class UnflattenArgs(Args):
    dim: int = Field(description="the dimension to split, without the batch")
    sizes: list[int] = Field(min_length=1, description="its new sizes; one entry may be -1")


@register
class Unflatten(Functional[UnflattenArgs]):
    name = "unflatten"
    autograd = Autograd(saves="none", view=True, pass_through=True)
    Args = UnflattenArgs
    doc = "Split one dimension into several, e.g. (C, H*W) -> (C, H, W) with dim 1, sizes [H, W]."

    def infer(self, args: UnflattenArgs, inputs: list[Shape], labels: list[str]) -> Shape:
        shape = self.one(inputs)
        d = axis(args.dim, shape)
        part = Reshape().infer(ReshapeArgs(shape=args.sizes), [(shape[d],)], labels)
        return (*shape[:d], *part, *shape[d + 1 :])

    def layout(
        self, args: UnflattenArgs, inputs: list[Layout], shapes: list[Shape], out: Shape
    ) -> Layout:
        """L becomes H×W (or D×H×W); flat features become the rank's default map."""
        layout, d = inputs[0], axis(args.dim, shapes[0])
        if layout is None:
            return None
        parts = {1: None, 2: ("H", "W"), 3: ("D", "H", "W")}.get(len(out) - len(layout) + 1)
        if layout[d] == "L" and parts:
            return (*layout[:d], *parts, *layout[d + 1 :])
        return default_layout(len(out)) if layout == ("F",) else None

    def expression(self, args: UnflattenArgs, inputs: list[str]) -> str:
        return (
            f"{inputs[0]}.unflatten({args.dim + 1 if args.dim >= 0 else args.dim}, "
            f"{tuple(args.sizes)!r})"
        )


class PermuteArgs(Args):
    dims: list[int] = Field(
        min_length=1, description="the input dimensions in their new order, without the batch"
    )


@register
class Permute(Functional[PermuteArgs]):
    name = "permute"
    autograd = Autograd(saves="none", view=True, pass_through=True)
    Args = PermuteArgs
    shorthand = "dims"
    doc = "Reorder dimensions, e.g. [1, 2, 0]: (C, H, W) -> (H, W, C) channels-last."

    def infer(self, args: PermuteArgs, inputs: list[Shape], labels: list[str]) -> Shape:
        shape = self.one(inputs)
        order = axes(args.dims, shape, "dims")
        if len(order) != len(shape):
            raise OpError(
                f"dims {args.dims} must name each of the {len(shape)} "
                f"dimensions of a {fmt_shape(shape)} input"
            )
        return tuple(shape[d] for d in order)

    def layout(
        self, args: PermuteArgs, inputs: list[Layout], shapes: list[Shape], out: Shape
    ) -> Layout:
        """The dims' names move with them: C×H×W permuted [1, 2, 0] is H×W×C."""
        layout = inputs[0]
        return (
            None if layout is None else tuple(layout[d] for d in axes(args.dims, shapes[0], "dims"))
        )

    def expression(self, args: PermuteArgs, inputs: list[str]) -> str:
        rank = len(args.dims)
        return f"{inputs[0]}.permute(0, {', '.join(str(d % rank + 1) for d in args.dims)})"

    def label(self, args: PermuteArgs) -> str:
        return f"permute {args.dims}"


class TransposeArgs(Args):
    dim0: int = Field(description="a dimension without the batch")
    dim1: int = Field(description="the dimension it swaps with")


@register
class Transpose(Functional[TransposeArgs]):
    name = "transpose"
    autograd = Autograd(saves="none", view=True, pass_through=True)
    Args = TransposeArgs
    doc = "Swap two dimensions, e.g. (C, L) -> (L, C) with dim0 0, dim1 1."

    def infer(self, args: TransposeArgs, inputs: list[Shape], labels: list[str]) -> Shape:
        shape = self.one(inputs)
        a, b = axis(args.dim0, shape, "dim0"), axis(args.dim1, shape, "dim1")
        out = list(shape)
        out[a], out[b] = shape[b], shape[a]
        return tuple(out)

    def layout(
        self, args: TransposeArgs, inputs: list[Layout], shapes: list[Shape], out: Shape
    ) -> Layout:
        """C×L transposed is L×D: channels along positions become tokens."""
        if inputs[0] is None:
            return None
        layout = list(inputs[0])
        a, b = axis(args.dim0, shapes[0]), axis(args.dim1, shapes[0])
        layout[a], layout[b] = layout[b], layout[a]
        return tuple(layout)

    def expression(self, args: TransposeArgs, inputs: list[str]) -> str:
        def at(d: int) -> int:
            return d + 1 if d >= 0 else d

        return f"{inputs[0]}.transpose({at(args.dim0)}, {at(args.dim1)})"


class SliceArgs(Args):
    dim: int = Field(0, description="the dimension to slice, without the batch (0: channels)")
    start: int = Field(0, description="first index (negative counts from the end)")
    end: int | None = Field(None, description="one past the last index; null: to the end")
    step: int = Field(1, gt=0)


@register
class Slice(Functional[SliceArgs]):
    name = "slice"
    autograd = Autograd(saves="none", view=True)
    aliases = ("narrow",)
    Args = SliceArgs
    doc = (
        "x[start:end:step] along one dimension, e.g. the first half of the channels (ShuffleNetV2)."
    )

    def infer(self, args: SliceArgs, inputs: list[Shape], labels: list[str]) -> Shape:
        shape = self.one(inputs)
        d = axis(args.dim, shape)
        size = len(range(*slice(args.start, args.end, args.step).indices(shape[d])))
        if size == 0:
            raise OpError(
                f"slice {args.start}:{args.end} of dimension {d} (size {shape[d]}) is empty"
            )
        return (*shape[:d], size, *shape[d + 1 :])

    def expression(self, args: SliceArgs, inputs: list[str]) -> str:
        text = f"{args.start or ''}:{'' if args.end is None else args.end}" + (
            f":{args.step}" if args.step != 1 else ""
        )
        # a negative dim counts from the end: index from the end with an ellipsis
        if args.dim < 0:
            return f"{inputs[0]}[..., {text}{', :' * (-args.dim - 1)}]"
        return batch_index(inputs[0], args.dim, text)

    def label(self, args: SliceArgs) -> str:
        return f"slice dim {args.dim} [{args.start}:{'' if args.end is None else args.end}]"


class SplitArgs(Args):
    sizes: IntOrList = Field(
        description="each output's size along `dim` (they must add up to it), or one "
        "int: pieces of that size, the last one smaller (torch.split)"
    )
    dim: int = Field(0, description="the dimension to cut, without the batch (0: channels)")


class MultiOutput(Functional[A]):
    """Cuts its input into views along one dimension. The expander makes one `slice` node per piece
    (`NAME.0`, `NAME.1`, ...): each piece has its own static shape, and reports, diagrams, memory
    and export treat it as the view it is."""

    autograd = Autograd(saves="none", view=True)
    multi_output = True

    def infer(self, args: Args, inputs: list[Shape], labels: list[str]) -> Shape:
        raise OpError(f"{self.name} has several outputs: read one with 'from: NAME.0'")

    @staticmethod
    def count(pieces: int) -> None:
        """Each output is a graph node: refuse a cut into more than
        MAX_OUTPUTS before making any."""
        if pieces > MAX_OUTPUTS:
            raise OpError(
                f"this cut makes {pieces:,} outputs; at most {MAX_OUTPUTS:,} (each is a node)"
            )

    @staticmethod
    def cut(shape: Shape, dim: int, sizes: list[int]) -> tuple[int, list[tuple[int, int]]]:
        d = axis(dim, shape)
        bounds, start = [], 0
        for size in sizes:
            bounds.append((start, start + size))
            start += size
        return d, bounds


@register
class Split(MultiOutput[SplitArgs]):
    name = "split"
    Args = SplitArgs
    shorthand = "sizes"
    doc = (
        "Cut one dimension into pieces of the given sizes (torch.split), "
        "each an output of its own read with `from: NAME.0`, `from: "
        "NAME.1`, ...: ShuffleNetV2's two halves, a qkv projection's thirds."
    )

    def pieces(self, args: SplitArgs, shape: Shape) -> tuple[int, list[tuple[int, int]]]:
        d = axis(args.dim, shape)
        if isinstance(args.sizes, int):
            if args.sizes < 1:
                raise OpError(f"split size must be positive, got {args.sizes}")
            self.count(-(-shape[d] // args.sizes))
            sizes = [min(args.sizes, shape[d] - k) for k in range(0, shape[d], args.sizes)]
        else:
            sizes = list(args.sizes)
            self.count(len(sizes))
            if any(s < 1 for s in sizes):
                raise OpError(f"split sizes must be positive, got {sizes}")
            if sum(sizes) != shape[d]:
                raise OpError(
                    f"split sizes {sizes} add up to {sum(sizes)}, but dimension {d} of the "
                    f"{fmt_shape(shape)} input has {shape[d]}"
                )
        return self.cut(shape, d, sizes)


class ChunkArgs(Args):
    chunks: int = Field(
        gt=0,
        description="how many pieces; as torch.chunk, each ceil(size / chunks) long, the last "
        "one smaller, and fewer pieces when the size runs out",
    )
    dim: int = Field(0, description="the dimension to cut, without the batch (0: channels)")


@register
class Chunk(MultiOutput[ChunkArgs]):
    name = "chunk"
    Args = ChunkArgs
    shorthand = "chunks"
    doc = (
        "Cut one dimension into `chunks` nearly equal pieces (torch.chunk), each an output of its "
        "own read with `from: NAME.0`, `from: NAME.1`, ...: ShuffleNetV2's `x.chunk(2, dim=1)`."
    )

    def pieces(self, args: ChunkArgs, shape: Shape) -> tuple[int, list[tuple[int, int]]]:
        d = axis(args.dim, shape)
        step = -(-shape[d] // args.chunks)
        self.count(-(-shape[d] // step))
        return self.cut(shape, d, [min(step, shape[d] - k) for k in range(0, shape[d], step)])


class SelectArgs(Args):
    dim: int = Field(0, description="the dimension to index, without the batch")
    index: int = Field(0, description="the position to keep (negative counts from the end)")


@register
class Select(Functional[SelectArgs]):
    name = "select"
    autograd = Autograd(saves="none", view=True)
    aliases = ("index",)
    Args = SelectArgs
    doc = (
        "Take one position along a dimension and drop "
        "that dimension, e.g. ViT's class token x[:, 0]."
    )

    def infer(self, args: SelectArgs, inputs: list[Shape], labels: list[str]) -> Shape:
        shape = self.one(inputs)
        d = axis(args.dim, shape)
        if not -shape[d] <= args.index < shape[d]:
            raise OpError(
                f"index {args.index} is out of range for dimension {d} of size {shape[d]}"
            )
        return shape[:d] + shape[d + 1 :]

    def layout(
        self, args: SelectArgs, inputs: list[Layout], shapes: list[Shape], out: Shape
    ) -> Layout:
        return without(inputs[0], (axis(args.dim, shapes[0]),))

    def expression(self, args: SelectArgs, inputs: list[str]) -> str:
        d = args.dim + 1 if args.dim >= 0 else args.dim
        return f"{inputs[0]}.select({d}, {args.index})"


class RollArgs(Args):
    shifts: IntOrList = Field(description="positions to shift by, one per dim")
    dims: IntOrList = Field(description="the dimensions to roll, without the batch")


@register
class Roll(Functional[RollArgs]):
    name = "roll"
    autograd = Autograd(saves="none")
    Args = RollArgs
    fresh_output = True
    doc = "Cyclic shift along dimensions (Swin's shifted windows), torch.roll."

    def infer(self, args: RollArgs, inputs: list[Shape], labels: list[str]) -> Shape:
        shape = self.one(inputs)
        dims = axes(args.dims, shape, "dims")
        shifts = [args.shifts] if isinstance(args.shifts, int) else args.shifts
        if len(shifts) != len(dims):
            raise OpError(f"{len(shifts)} shifts for {len(dims)} dims")
        return shape

    def expression(self, args: RollArgs, inputs: list[str]) -> str:
        def batched(d: int) -> int:
            return d + 1 if d >= 0 else d

        dims = [args.dims] if isinstance(args.dims, int) else args.dims
        shifts = [args.shifts] if isinstance(args.shifts, int) else args.shifts
        return (
            f"torch.roll({inputs[0]}, shifts={tuple(shifts)!r}, "
            f"dims={tuple(batched(d) for d in dims)!r})"
        )


class ChannelShuffleArgs(Args):
    groups: int = Field(gt=0, description="channel groups to interleave")


@register
class ChannelShuffle(Functional[ChannelShuffleArgs]):
    name = "channel_shuffle"
    needs_layout = "channels_first"
    autograd = Autograd(saves="none")
    Args = ChannelShuffleArgs
    shorthand = "groups"
    fresh_output = True
    doc = "Interleave the channels of `groups` groups (ShuffleNet): (g, C/g) -> (C/g, g)."

    def infer(self, args: ChannelShuffleArgs, inputs: list[Shape], labels: list[str]) -> Shape:
        shape = self.one(inputs)
        if len(shape) < 2:
            raise OpError(f"channel_shuffle needs a (C, ...spatial) input, got {fmt_shape(shape)}")
        if shape[0] % args.groups:
            raise OpError(f"groups={args.groups} does not divide the {shape[0]} channels")
        return shape

    def expression(self, args: ChannelShuffleArgs, inputs: list[str]) -> str:
        return f"torch.nn.functional.channel_shuffle({inputs[0]}, {args.groups})"


class PadArgs(Args):
    padding: IntOrList = Field(
        description="an int for every side, or [left, right, top, bottom, ...] "
        "(torch's F.pad order: last dimension first)"
    )
    mode: Literal["constant", "reflect", "replicate", "circular"] = "constant"
    value: float = Field(0.0, description="fill value of constant padding")


@register
class Pad(Functional[PadArgs]):
    name = "pad"
    autograd = Autograd(saves="none")
    Args = PadArgs
    shorthand = "padding"
    fresh_output = True
    doc = (
        "Pad the spatial dimensions of a (C, ...spatial) input "
        "(zeros, a constant, reflect, replicate, circular)."
    )

    def pads(self, args: PadArgs, shape: Shape) -> list[int]:
        if len(shape) < 2:
            raise OpError(f"pad needs a (C, ...spatial) input, got {fmt_shape(shape)}")
        n = len(shape) - 1
        pads = [args.padding] * (2 * n) if isinstance(args.padding, int) else list(args.padding)
        if not pads or len(pads) % 2 or len(pads) > 2 * n:
            raise OpError(
                f"padding {args.padding} must be an int or pairs for up to {n} spatial dimensions"
            )
        if args.mode != "constant" and args.value != 0.0:
            raise OpError(f"value is the fill of constant padding, not of mode '{args.mode}'")
        if args.mode != "constant" and len(pads) != 2 * n:
            raise OpError(
                f"mode '{args.mode}' pads every spatial dimension: give an int or {2 * n} values"
            )
        return pads

    def infer(self, args: PadArgs, inputs: list[Shape], labels: list[str]) -> Shape:
        shape = self.one(inputs)
        out = list(shape)
        for k, (lo, hi) in enumerate(zip(*[iter(self.pads(args, shape))] * 2, strict=True)):
            d = len(shape) - 1 - k
            if args.mode == "reflect" and max(lo, hi) >= shape[d]:
                raise OpError(
                    f"reflect padding {max(lo, hi)} must be "
                    f"smaller than the size {shape[d]} it reflects"
                )
            out[d] = shape[d] + lo + hi
            if out[d] < 1:
                raise OpError(f"padding {args.padding} leaves dimension {d} empty")
        return tuple(out)

    def expression(self, args: PadArgs, inputs: list[str]) -> str:
        x = inputs[0]
        pads = (
            f"({args.padding},) * (2 * ({x}.dim() - 2))"
            if isinstance(args.padding, int)
            else repr(tuple(args.padding))
        )
        extra = f", mode={args.mode!r}" if args.mode != "constant" else ""
        extra += f", value={args.value!r}" if args.value != 0.0 else ""
        return f"torch.nn.functional.pad({x}, {pads}{extra})"


class MeanArgs(Args):
    dim: IntOrList = Field(description="the dimension(s) to average over, without the batch")
    keepdim: bool = False


@register
class Mean(Functional):
    name = "mean"
    autograd = Autograd(saves="none")
    Args = MeanArgs
    shorthand = "dim"
    fresh_output = True
    doc = "Average over dimensions, e.g. [1, 2] for a (C, H, W) map (MNASNet's x.mean([2, 3]))."

    def infer(self, args: MeanArgs, inputs: list[Shape], labels: list[str]) -> Shape:
        shape = self.one(inputs)
        dims = axes(args.dim, shape)
        if args.keepdim:
            return tuple(1 if i in dims else s for i, s in enumerate(shape))
        return tuple(s for i, s in enumerate(shape) if i not in dims)

    def other_ops(self, args: MeanArgs, inputs: list[Shape], out: Shape) -> int:
        return numel(inputs[0])

    def layout(
        self, args: MeanArgs, inputs: list[Layout], shapes: list[Shape], out: Shape
    ) -> Layout:
        return inputs[0] if args.keepdim else without(inputs[0], axes(args.dim, shapes[0]))

    def expression(self, args: MeanArgs, inputs: list[str]) -> str:
        dims = [args.dim] if isinstance(args.dim, int) else args.dim
        batched = tuple(d + 1 if d >= 0 else d for d in dims)
        return f"{inputs[0]}.mean({batched!r}{', keepdim=True' if args.keepdim else ''})"


class SumArgs(MeanArgs):
    dim: IntOrList = Field(description="the dimension(s) to add up, without the batch")
    keepdim: bool = False


@register
class Sum(Mean):
    name = "sum"
    Args = SumArgs
    doc = (
        "Add up over dimensions, e.g. 0 for the channels "
        "of a (C, H, W) map, -2 for the tokens of (L, D)."
    )

    def expression(self, args: MeanArgs, inputs: list[str]) -> str:
        return super().expression(args, inputs).replace(".mean(", ".sum(", 1)
