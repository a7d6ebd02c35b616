"""Ops of archc/ops/tensor.py (reshape, permute, slice, roll, pad, mean...) and flatten's start/end:
each against the torch expression it stands for, static shapes equal
runtime ones, positioned errors."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from archc import api
from archc.compiler.export import export_python
from archc.errors import SpecError
from tests.conftest import compile_and_verify

Ref = Callable[[torch.Tensor], torch.Tensor]

# (layer, input shape without the batch, what it computes)
CASES: list[tuple[str, list[int], Ref]] = [
    ("reshape: [6, 8]", [3, 4, 4], lambda x: x.reshape(-1, 6, 8)),
    ("reshape: [-1, 4]", [3, 4, 4], lambda x: x.reshape(-1, 12, 4)),
    ("view: [48]", [3, 4, 4], lambda x: x.reshape(-1, 48)),
    ("unflatten: {dim: 1, sizes: [4, 4]}", [3, 16], lambda x: x.unflatten(2, (4, 4))),
    ("unflatten: {dim: -1, sizes: [2, -1]}", [3, 16], lambda x: x.unflatten(-1, (2, 8))),
    ("flatten: {start: 1}", [3, 4, 5], lambda x: x.flatten(2)),
    ("flatten: {start: 0, end: 1}", [3, 4, 5], lambda x: x.flatten(1, 2)),
    ("flatten: {start: -2, end: -1}", [2, 3, 4, 5], lambda x: x.flatten(-2)),
    ("permute: [1, 2, 0]", [3, 4, 5], lambda x: x.permute(0, 2, 3, 1)),
    ("permute: [-1, 0, 1]", [3, 4, 5], lambda x: x.permute(0, 3, 1, 2)),
    ("transpose: {dim0: 0, dim1: 1}", [3, 7], lambda x: x.transpose(1, 2)),
    ("transpose: {dim0: -1, dim1: 0}", [3, 4, 5], lambda x: x.transpose(-1, 1)),
    ("slice: {dim: 0, end: 2}", [4, 3, 3], lambda x: x[:, :2]),
    ("slice: {dim: 0, start: 2}", [4, 3, 3], lambda x: x[:, 2:]),
    ("slice: {dim: 2, start: 1, end: -1, step: 2}", [4, 3, 6], lambda x: x[:, :, :, 1:-1:2]),
    ("narrow: {dim: -2, start: -2}", [4, 5, 6], lambda x: x[..., -2:, :]),
    ("select: {dim: 0, index: 0}", [5, 8], lambda x: x[:, 0]),
    ("index: {dim: -1, index: -1}", [5, 8], lambda x: x[..., -1]),
    (
        "roll: {shifts: [-1, -1], dims: [1, 2]}",
        [3, 4, 5],
        lambda x: torch.roll(x, (-1, -1), (2, 3)),
    ),
    ("roll: {shifts: 2, dims: -1}", [3, 4, 5], lambda x: torch.roll(x, 2, -1)),
    (
        "channel_shuffle: 2",
        [6, 3, 3],
        lambda x: x.view(-1, 2, 3, 3, 3).transpose(1, 2).reshape(-1, 6, 3, 3),
    ),
    ("pad: 1", [2, 3, 4], lambda x: F.pad(x, (1, 1, 1, 1))),
    (
        "pad: {padding: [0, 1, 2, 0], mode: constant, value: 0.5}",
        [2, 3, 4],
        lambda x: F.pad(x, (0, 1, 2, 0), value=0.5),
    ),
    (
        "pad: {padding: [1, 1, 2, 2], mode: reflect}",
        [2, 3, 4],
        lambda x: F.pad(x, (1, 1, 2, 2), mode="reflect"),
    ),
    ("pad: {padding: 2, mode: circular}", [2, 5], lambda x: F.pad(x, (2, 2), mode="circular")),
    ("mean: [1, 2]", [3, 4, 5], lambda x: x.mean((2, 3))),
    ("mean: {dim: -1, keepdim: true}", [3, 4], lambda x: x.mean(-1, keepdim=True)),
    ("sum: 0", [3, 4, 5], lambda x: x.sum(1)),
    ("sum: {dim: [-2, -1], keepdim: true}", [3, 4, 5], lambda x: x.sum((-2, -1), keepdim=True)),
]


def spec(layer: str, shape: list[int]) -> str:
    return f"input: {shape}\nlayers:\n  - {layer}\n"


@pytest.mark.parametrize(("layer", "shape", "ref"), CASES, ids=[c[0] for c in CASES])
def test_op_computes_its_torch_expression(layer: str, shape: list[int], ref: Ref) -> None:
    model = compile_and_verify(
        spec(layer, shape)
    )  # static == runtime shapes, params; backward works
    x = torch.randn(2, *shape)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        out = model(x)
    assert torch.equal(out, ref(x))
    assert counter.get_total_flops() == 2 * model.archc_graph.total_macs == 0
    assert not model.state_dict()


@pytest.mark.parametrize(("layer", "shape"), [(c[0], c[1]) for c in CASES])
def test_functional_ops_take_no_index(layer: str, shape: list[int]) -> None:
    """A function in forward: the bn after it is still index 0 of its
    Sequential (flatten is a module)."""
    graph = api.compile_graph(f"input: {shape}\nlayers:\n  - seq: [{{{layer}}}, bn]\n    name: s\n")
    assert [n.module for n in graph if n.op == "bn"] == [
        "s.1" if layer.startswith("flatten") else "s.0"
    ]


def test_exported_code_runs_the_same() -> None:
    text = (
        "name: t\ninput: [8, 4, 4]\nlayers:\n  - permute: [1, 2, 0]\n"
        "  - {slice: {dim: -1, end: 4}}\n  - channel_shuffle: 1\n  - reshape: [16, 4]\n"
        "  - transpose: {dim0: 0, dim1: 1}\n  - {pad: 1}\n  - mean: -1\n"
    )
    model = api.build(text)
    namespace: dict[str, object] = {}
    exec(compile(export_python(model.archc_graph, None, "t.yaml"), "t.py", "exec"), namespace)
    standalone = namespace["T"]()  # type: ignore[operator]
    x = torch.randn(2, 8, 4, 4)
    assert torch.equal(standalone(x), model(x))


@pytest.mark.parametrize(
    ("layer", "shape", "message"),
    [
        ("reshape: [5, 5]", [3, 4], "cannot reshape 3x4 (12 elements) to [5, 5]"),
        ("reshape: [-1, -1]", [3, 4], "at most one -1"),
        ("permute: [0, 0, 1]", [3, 4, 5], "names a dimension twice"),
        ("permute: [1, 0]", [3, 4, 5], "must name each of the 3 dimensions"),
        ("transpose: {dim0: 0, dim1: 3}", [3, 4, 5], "dim1=3 is out of range for a 3x4x5 input"),
        ("slice: {dim: 0, start: 4}", [4, 3], "slice 4:None of dimension 0 (size 4) is empty"),
        ("select: {dim: 1, index: 3}", [4, 3], "index 3 is out of range for dimension 1 of size 3"),
        ("roll: {shifts: [1, 2], dims: 0}", [4, 3], "2 shifts for 1 dims"),
        ("channel_shuffle: 3", [4, 3, 3], "groups=3 does not divide the 4 channels"),
        ("pad: {padding: [1, 1, 1]}", [4, 3, 3], "must be an int or pairs"),
        (
            "pad: {padding: 3, mode: reflect}",
            [4, 3, 3],
            "reflect padding 3 must be smaller than the size 3",
        ),
        (
            "pad: {padding: 1, mode: reflect, value: 1.0}",
            [4, 3, 3],
            "value is the fill of constant padding",
        ),
        (
            "pad: {padding: [1, 1], mode: replicate}",
            [4, 3, 3],
            "mode 'replicate' pads every spatial dimension: give an int or 4",
        ),
        ("mean: 3", [4, 3, 3], "dim=3 is out of range"),
        ("flatten: {start: 2, end: 1}", [4, 3, 3], "start=2 comes after end=1"),
        ("unflatten: {dim: 0, sizes: [3, 3]}", [4, 3], "cannot reshape 4 (4 elements) to [3, 3]"),
    ],
)
def test_errors_are_positioned(layer: str, shape: list[int], message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)) as err:
        api.compile_graph(spec(layer, shape))
    assert err.value.line == 3
