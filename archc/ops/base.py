"""The op contract: each op declares its arguments, shape rule, costs and emitter in one class.

Shapes exclude the batch dimension: (C, H, W) for images, (F,) for flat features, (C, L) for
sequences. Shape rules and costs are pure Python so that `archc check` never imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

Shape = tuple[int, ...]


# What each dimension of a shape is, batch excluded: ("C", "H", "W") a channels-first map,
# ("H", "W", "C") a channels-last one, ("L", "C") a token sequence (L x D), ("C", "L") channels
# along a sequence, ("F",) flat features; None where archc cannot tell (after a reshape).
Layout = tuple[str, ...] | None
LAYOUT_NEEDS = {  # what an op's `needs_layout` asks for -> its name in messages
    "channels_first": "a channels-first (C, H, W) map",
    "channels_last": "a channels-last (H, W, C) map",
    "tokens": "an (L, D) token sequence",
}


def default_layout(rank: int) -> Layout:
    """The layout a shape of this rank has unless an op says otherwise (the input's, a conv's)."""
    return {1: ("F",), 2: ("C", "L"), 3: ("C", "H", "W"), 4: ("C", "D", "H", "W")}.get(rank)


def layout_text(layout: Layout) -> str:
    """'H×W×C', 'L×D' (a token sequence's features are D), '' where unknown."""
    if layout is None:
        return ""
    letters = ["D" if a == "C" and "L" in layout[:k] else a for k, a in enumerate(layout)]
    return "×".join(letters)


def shape_text(shape: Shape, layout: Layout) -> str:
    """A shape for tables and diagrams, its layout named where it is not the rank's default:
    '56x56x96 (H×W×C)', '197x768 (L×D)', but '64x8x8'."""
    if layout is None or layout == default_layout(len(shape)) or len(layout) != len(shape):
        return fmt_shape(shape)
    return f"{fmt_shape(shape)} ({layout_text(layout)})"


def layout_fix(have: Layout, need: str) -> str:
    """How to get the layout an op needs from the one it has, as spec items."""
    fixes = {
        (("H", "W", "C"), "channels_first"): "permute: [2, 0, 1] turns it into C×H×W",
        (("C", "H", "W"), "channels_last"): "permute: [1, 2, 0] turns it into H×W×C",
        (
            ("C", "H", "W"),
            "tokens",
        ): "flatten: {start: 1} then transpose: {dim0: 0, dim1: 1} make L×D tokens",
        (("H", "W", "C"), "tokens"): "flatten: {start: 0, end: 1} makes L×D tokens",
        (("C", "L"), "tokens"): "transpose: {dim0: 0, dim1: 1} makes L×D tokens",
        (("L", "C"), "channels_first"): "transpose: {dim0: 0, dim1: 1} makes a C×L sequence",
    }
    return fixes.get((have, need), "permute or reshape it first") if have is not None else ""


class OpError(Exception):
    """A shape or argument problem found by an op; the compiler adds the position."""


MAX_DIM = 2**40  # largest size of one dimension any shape may have (input or inferred)
MAX_COUNT = (
    2**62
)  # largest element, parameter or operation count of one layer (int64 with room to sum)


class Args(BaseModel):
    """Base of every op's argument model: unknown arguments are errors, never ignored."""

    # allow_inf_nan=False: every float argument of every op is finite, refused here with a position
    # before any shape rule, report or emitter sees a nan or inf
    model_config = ConfigDict(
        extra="forbid", frozen=True, strict=True, defer_build=True, allow_inf_nan=False
    )


class NoArgs(Args):
    pass


@dataclass(frozen=True)
class Call:
    """A constructor or function call, used both to build the module and to print it as source.

    `target` is a dotted name inside torch (e.g. "nn.Conv2d", "torch.cat").
    """

    target: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    def source(self, inputs: Sequence[str] = ()) -> str:
        parts = [*inputs, *(repr(a) for a in self.args)]
        parts += [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.target}({', '.join(parts)})"


@dataclass(frozen=True)
class Window:
    """How one output position reads its input along each spatial dim:
    the receptive-field rule's input.

    `stride` is a Fraction so that upsampling (1/2) and adaptive pools (7/3) stay exact.
    """

    kernel: tuple[int, ...]
    stride: tuple[Fraction, ...]
    dilation: tuple[int, ...]


SaveRule = Literal[
    "input", "output", "input_when_fresh", "clone_when_inplace", "each_other", "none"
]


@dataclass(frozen=True)
class Side:
    """A tensor a backward keeps besides activations: pool indices, a dropout mask, norm statistics.

    `count` tensors, each of one element per output element ("output"), per channel ("channel"),
    per sample ("sample") or per sample and channel ("sample_channel"), of `nbytes` bytes each
    (None: the activation dtype's size).
    """

    count: int
    per: Literal["output", "channel", "sample", "sample_channel"]
    nbytes: int | None = None

    def bytes(self, out: Shape, batch: int, size: int) -> int:
        elements = {
            "output": math.prod(out) * batch,
            "channel": out[0],
            "sample": batch,
            "sample_channel": out[0] * batch,
        }[self.per]
        return self.count * elements * (size if self.nbytes is None else self.nbytes)


@dataclass(frozen=True)
class Autograd:
    """What one training step holds for an op besides its output (archc.analysis.memory),
    from torch's derivatives.yaml.

    `saves`: what the backward keeps: its inputs, its output, or nothing; "input_when_fresh" the
    input, but the output when the op ran in place (leaky_relu); "clone_when_inplace" the input, and
    when run in place a copy of it autograd makes first (hardtanh_ behind ReLU6): a new tensor;
    "each_other" each input, for the other inputs' gradients (multiply).
    `view`: the output is a view of (or the same tensor as) the input: no new storage.
    `pass_through`: the backward hands the output gradient (or views of it) to every input without
    allocating. `side`: the side tensors the backward keeps.
    """

    saves: SaveRule = "input"
    view: bool = False
    pass_through: bool = False
    side: tuple[Side, ...] = ()


# The per-op facts every op class declares itself (tests/test_op_facts.py
# checks each registered op).
DECLARED_FACTS = ("autograd", "colour", "weighted")


A = TypeVar("A", bound=Args)  # an op's Args class: `class Conv(Op[ConvArgs])`


class Op(Generic[A]):
    """Base class. Subclasses set `name`, `Args`, and override the rules they need."""

    name: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    Args: ClassVar[type[Args]] = NoArgs
    doc: ClassVar[str] = ""
    # The argument a scalar shorthand fills: `- conv: 64` means out=64.
    shorthand: ClassVar[str | None] = None
    # Merges take several inputs (branches or `from:` references); others exactly one.
    multi_input: ClassVar[bool] = False
    # Arguments people expect that the op does not take -> why, and what to write instead (an
    # unknown-argument error says it: `add` has no `dim`).
    argument_notes: ClassVar[dict[str, str]] = {}
    # Has several outputs (split, chunk): the item becomes one view node per output, `NAME.0`,
    # `NAME.1`, ... (later items read them with `from: NAME.1`); the op gives `pieces()`.
    multi_output: ClassVar[bool] = False
    # Emitted as a child module (True) or as a function call inside forward (False).
    is_module: ClassVar[bool] = True
    # Owns one learned tensor instead of a child module: the enclosing module holds it as an
    # nn.Parameter named after the node (`class_token`, `layer_scale`); `emit()` gives the Call that
    # creates its first value and `source()` receives the attribute
    # (`self.layer_scale`) as inputs[0].
    owns_tensor: ClassVar[bool] = False
    # How forward calls the op's module when not plainly `module(x)`: a template over `{module}` and
    # `{x}` (nn.MultiheadAttention: query, key and value, first of its
    # outputs); never in nn.Sequential.
    module_call: ClassVar[str | None] = None
    # May run in place on its input (only done when the compiler proves it safe).
    inplace_capable: ClassVar[bool] = False
    # Produces a fresh tensor whose value its own backward does not
    # need: in-place successors are safe.
    fresh_output: ClassVar[bool] = False
    # The kind of per-op initialisation rule that applies ("conv", "linear", "norm" or None).
    init_kind: ClassVar[str | None] = None
    # The facts below are declared by every op class (DECLARED_FACTS; a test checks each registered
    # op, plugins included); the defaults only keep an undeclared third-party op usable.
    # What a training step keeps for this op's backward (archc.analysis.memory).
    autograd: ClassVar[Autograd] = Autograd()
    # The diagram's fill colour for the op's family (archc.analysis.diagram),
    # e.g. "#dbe8f6" for convolutions.
    colour: ClassVar[str] = "#ffffff"
    # A weighted layer (conv, linear): counts toward the network's depth, the 18 of ResNet-18
    # (archc.compiler.ir.Graph.depth).
    weighted: ClassVar[bool] = False

    # The layout the op's input must have (a key of LAYOUT_NEEDS), checked where archc knows it.
    needs_layout: ClassVar[str | None] = None

    def infer(self, args: A, inputs: list[Shape], labels: list[str]) -> Shape:
        """Output shape; raise OpError with a readable message on a mismatch."""
        return self.one(inputs)

    def check_layout(self, args: A, layout: Layout, shape: Shape) -> None:
        """Refuse an input whose known layout is not what the op computes on (conv on H×W×C)."""
        need = self.needs_layout
        if need is None or layout is None or len(layout) != len(shape):
            return
        fits = {
            "channels_first": layout[0] in ("C", "F"),  # C×H×W, C×L, or flat features (bn)
            "channels_last": layout[-1] == "C" and layout[0] in ("H", "D"),
            "tokens": layout == ("L", "C"),
        }[need]
        if not fits:
            raise OpError(
                f"{self.name} needs {LAYOUT_NEEDS[need]}, but its input is "
                f"{fmt_shape(shape)} laid out {layout_text(layout)}; {layout_fix(layout, need)}"
            )

    def layout(self, args: A, inputs: list[Layout], shapes: list[Shape], out: Shape) -> Layout:
        """The output's layout: the one an op that needs a layout computes in (a conv makes C×H×W
        whatever the input was said to be: a spec's input is only a shape), else the input's when
        the rank is kept (a channels-last linear's H×W×C), the rank's default after a change from
        a default layout, else unknown."""
        if self.needs_layout is not None:
            return {
                "channels_first": default_layout(len(out)),
                "channels_last": (*"DHW"[4 - len(out) :], "C") if len(out) in (3, 4) else None,
                "tokens": ("L", "C") if len(out) == 2 else None,
            }[self.needs_layout]
        first, shape = (inputs[0], shapes[0]) if inputs else (None, ())
        if first is None:
            return None
        if len(out) == len(shape):
            return first
        return default_layout(len(out)) if first == default_layout(len(shape)) else None

    def params(self, args: A, inputs: list[Shape], out: Shape) -> int:
        return 0

    def pieces(self, args: A, shape: Shape) -> tuple[int, list[tuple[int, int]]]:
        """For `multi_output` ops: the dimension cut (an index into `shape`) and each output's
        [start, end) along it; raise OpError on a cut that does not fit."""
        raise NotImplementedError(f"op {self.name} has one output")

    def buffers(self, args: A, inputs: list[Shape], out: Shape) -> int:
        return 0

    def macs(self, args: A, inputs: list[Shape], out: Shape) -> int:
        """Multiply-accumulates of conv/linear weights, bias excluded (torchvision's convention)."""
        return 0

    def other_ops(self, args: A, inputs: list[Shape], out: Shape) -> int:
        """Per-element work (norms, activations, pooling, merges, bias adds)."""
        return 0

    def workspace(self, args: A, inputs: list[Shape], out: Shape) -> int:
        """Elements of the transient tensors one forward of the op allocates besides its output
        (attention scores and probabilities, L^2 per head): the memory guard counts them, so that
        a spec whose outputs are small cannot exhaust memory inside one op."""
        return 0

    def largest_param_tensor(self, args: A, params: int, out: Shape) -> int:
        """Elements of the op's largest parameter tensor (a for-loop Adam
        step allocates two that size)."""
        return params

    def int64_buffers(self, args: A, buffers: int) -> int:
        """How many of the op's `buffers` elements are int64
        (BatchNorm's num_batches_tracked counter,
        MaxViT's relative_position_index)."""
        return 0

    def emit(self, args: A, inputs: list[Shape], out: Shape, inplace: bool) -> Call:
        raise NotImplementedError(f"op {self.name} has no emitter")

    def init_source(self, args: A, tensor: str) -> str | None:
        """For `owns_tensor` ops: a statement that fills the held tensor in place after it is
        created (`nn.init.trunc_normal_(self.table, std=0.02)`), `tensor` being its attribute; None
        when `emit`'s value is the initial one."""
        return None

    def source(self, args: A, inputs: list[str], shapes: list[Shape], inplace: bool) -> str:
        """Forward code of a functional op (`is_module = False`) on its inputs' variable names.

        Defaults to the op's `expression(args, inputs)` (`inplace_expression` where the compiler
        proved in-place safe); override it when the code depends on the input shapes. The code must
        be TorchScript-compatible, as the generated model is scripted and exported.
        """
        if inplace:
            return self.inplace_expression(args, inputs)
        return self.expression(args, inputs)

    def expression(self, args: A, inputs: list[str]) -> str:
        """A functional op's forward expression on its inputs'
        variable names (the default `source`)."""
        raise NotImplementedError(f"op {self.name} has no expression")

    def inplace_expression(self, args: A, inputs: list[str]) -> str:
        """`expression` writing into its first input, for ops with `inplace_capable = True`."""
        raise NotImplementedError(f"op {self.name} has no in-place expression")

    def label(self, args: A) -> str:
        """Short text for diagrams and tables, e.g. 'conv 3x3/2, 64'."""
        return self.name

    def receptive_window(self, args: A, inputs: list[Shape], out: Shape) -> Window | None:
        """The window this op slides over the spatial dims, for receptive
        fields (archc.analysis.receptive).

        None (the default) means no declared window: archc.analysis.receptive then treats a
        shape-preserving op as pointwise in space and one that drops the spatial
        dims as seeing the whole input.
        """
        return None

    # helpers shared by subclasses
    @staticmethod
    def one(inputs: list[Shape]) -> Shape:
        if len(inputs) != 1:
            raise OpError(f"takes one input, got {len(inputs)}")
        return inputs[0]


def numel(shape: Shape) -> int:
    return math.prod(shape)


def fmt_shape(shape: Shape) -> str:
    return "x".join(str(d) for d in shape) if shape else "scalar"


def spatial(shape: Shape, what: str, min_rank: int = 2) -> tuple[int, Shape]:
    """Split (C, *spatial) and check the rank, for conv/pool/norm ops."""
    if len(shape) < min_rank:
        raise OpError(
            f"{what} needs a (channels, ...spatial) input, "
            f"got {fmt_shape(shape)}; is a flatten too early?"
        )
    if len(shape) > 4:
        raise OpError(f"{what} supports up to 3 spatial dimensions, got {fmt_shape(shape)}")
    return shape[0], shape[1:]


def ntuple(value: int | Sequence[int], n: int, what: str) -> tuple[int, ...]:
    """Broadcast an int to n dims, or check a list has n entries (kernel: [1, 7])."""
    if isinstance(value, int):
        return (value,) * n
    values = tuple(value)
    if len(values) != n:
        raise OpError(f"{what} has {len(values)} values but the input has {n} spatial dimensions")
    return values


def dim_suffix(n_spatial: int) -> str:
    return f"{n_spatial}d"


def compact(values: tuple[int, ...]) -> int | tuple[int, ...]:
    """(3, 3) -> 3 while (1, 7) stays: the form a person would write."""
    return values[0] if len(set(values)) == 1 else tuple(values)
