"""Ops of archc/ops/slicing.py: subsample and pad_channels, the option-A shortcut of He et al.'s
CIFAR ResNets, against the expressions they stand for."""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from archc import api
from archc.analysis.receptive import Field, deepest_field, receptive_fields
from archc.errors import SpecError
from tests import reference_models as ref

SPECS = Path(__file__).resolve().parents[2] / "specs"

SHORTCUT_SPEC = """
input: {shape}
layers:
  - subsample: {stride}
  - pad_channels: {{before: {before}, after: {after}}}
"""


@pytest.mark.parametrize(
    ("shape", "stride", "expected"),
    [
        ([16, 32, 32], 2, (16, 16, 16)),
        ([16, 7, 7], 2, (16, 4, 4)),  # odd sizes keep the first position: ceil(7 / 2)
        ([3, 5, 9], [1, 3], (3, 5, 3)),
        ([4, 9], 2, (4, 5)),  # (C, L) sequences
        ([2, 5, 6, 7], 2, (2, 3, 3, 4)),  # volumes
    ],
)
def test_subsample_is_a_strided_slice(
    shape: list[int], stride: int | list[int], expected: tuple[int, ...]
) -> None:
    text = f"input: {shape}\nlayers:\n  - subsample: {stride}\n"
    model = api.build(text)
    assert model.archc_graph.shape_of(model.archc_graph.output) == expected
    x = torch.randn(2, *shape)
    steps = [stride] * (len(shape) - 1) if isinstance(stride, int) else stride
    want = x[(slice(None), slice(None), *(slice(None, None, s) for s in steps))]
    assert torch.equal(model(x), want)
    assert list(model.state_dict()) == []


@pytest.mark.parametrize("shape", [[16, 8, 8], [6], [4, 9]])
def test_pad_channels_adds_zero_channels(shape: list[int]) -> None:
    text = f"input: {shape}\nlayers:\n  - pad_channels: {{before: 2, after: 3}}\n"
    model = api.build(text)
    assert model.archc_graph.shape_of(model.archc_graph.output) == (shape[0] + 5, *shape[1:])
    x = torch.randn(2, *shape)
    out = model(x)
    assert torch.equal(out[:, 2:-3], x)
    assert not out[:, :2].any() and not out[:, -3:].any()


def test_option_a_shortcut_equals_the_reference_lambda() -> None:
    """`F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4))`,
    as in He et al.'s CIFAR code."""
    model = api.build(SHORTCUT_SPEC.format(shape=[16, 32, 32], stride=2, before=8, after=8))
    x = torch.randn(2, 16, 32, 32)
    assert torch.equal(model(x), F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 8, 8), "constant", 0.0))
    assert torch.equal(model(x), ref.PadShortcut(16, 32)(x))


def test_pad_channels_fill_value_and_static_costs() -> None:
    model = api.build("input: [2, 3, 3]\nlayers:\n  - pad_channels: {after: 1, value: 1.5}\n")
    assert torch.equal(model(torch.zeros(1, 2, 3, 3))[:, 2], torch.full((1, 3, 3), 1.5))
    graph = model.archc_graph
    assert (graph.total_params, graph.total_macs) == (0, 0)


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        ("subsample: 0", "stride must be positive"),
        ("subsample: [2, 2, 2]", "has 3 values but the input has 2 spatial dimensions"),
        ("pad_channels: {before: -1}", "greater than or equal to 0"),
        ("pad_channels: {middle: 1}", "unknown argument 'middle'"),
    ],
)
def test_shortcut_op_errors(layer: str, message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        api.compile_graph(f"input: [4, 8, 8]\nlayers:\n  - {layer}\n")


def test_subsample_needs_a_spatial_input() -> None:
    with pytest.raises(SpecError, match="subsample needs a"):
        api.compile_graph("input: [16]\nlayers:\n  - subsample: 2\n")


def test_subsample_keeps_the_receptive_field_known() -> None:
    """A strided slice is a 1-wide window: ResNet-20's field is 3 + 12 + (2 +
    20) + (4 + 40) = 81 at stride 4."""
    graph = api.compile_graph(SPECS / "resnet20.yaml")
    fields = receptive_fields(graph)
    assert fields["layer2.0.subsample"] == Field(
        (Fraction(15),) * 2, (Fraction(2),) * 2
    )  # layer1's 15, now every 2nd
    deepest = deepest_field(graph, fields)
    assert deepest is not None and deepest[1] == Field((Fraction(81),) * 2, (Fraction(4),) * 2)
