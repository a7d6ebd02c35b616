"""Ops of archc/ops/conv.py: conv (1d/2d/3d, groups, dilation, 'same') and conv_transpose."""

from __future__ import annotations

import re

import pytest
import torch.nn.functional as F

from archc import api
from archc.errors import SpecError
from tests.ops.conftest import Reference, check_op

CASES: list[tuple[str, list[int], Reference]] = [
    (
        "conv: {out: 6, kernel: 3, stride: 2, padding: 1, groups: 2}",
        [4, 9, 9],
        lambda m, x: F.conv2d(x, m.weight, m.bias, 2, 1, 1, 2),
    ),
    (
        "conv: {out: 3, kernel: 5, dilation: 2, bias: false}",
        [4, 20],
        lambda m, x: F.conv1d(x, m.weight, None, 1, 0, 2),
    ),
    (
        "conv: {out: 4, kernel: [1, 3, 3], padding: same}",
        [2, 5, 6, 7],
        lambda m, x: F.conv3d(x, m.weight, m.bias, padding="same"),
    ),
    (
        "conv: {out: 4, kernel: [1, 7], padding: [0, 3]}",
        [4, 8, 8],
        lambda m, x: F.conv2d(x, m.weight, m.bias, padding=(0, 3)),
    ),
    (
        "conv: {out: 8, kernel: 3, groups: 8, padding: 1, padding_mode: reflect}",
        [8, 6, 6],
        lambda m, x: F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), m.weight, m.bias, groups=8),
    ),
    (
        "conv_transpose: {out: 3, kernel: 2, stride: 2}",
        [4, 5, 5],
        lambda m, x: F.conv_transpose2d(x, m.weight, m.bias, 2),
    ),
    (
        "conv_transpose: {out: 2, kernel: 3, stride: 2, padding: 1, output_padding: 1}",
        [4, 5],
        lambda m, x: F.conv_transpose1d(x, m.weight, m.bias, 2, 1, 1),
    ),
]


@pytest.mark.parametrize(("layer", "shape", "reference"), CASES, ids=[c[0] for c in CASES])
def test_conv_computes_the_torch_convolution(
    layer: str, shape: list[int], reference: Reference
) -> None:
    check_op(layer, shape, reference)


@pytest.mark.parametrize(
    ("layer", "shape", "message"),
    [
        (
            "conv: {out: 6, kernel: 3, groups: 4}",
            [6, 8, 8],
            "groups=4 must divide both input channels (6)",
        ),
        ("conv: {out: 4, kernel: 9}", [3, 8, 8], "does not fit"),
        (
            "conv: {out: 4, kernel: [3, 3, 3]}",
            [3, 8, 8],
            "has 3 values but the input has 2 spatial dimensions",
        ),
    ],
)
def test_conv_errors_are_positioned(layer: str, shape: list[int], message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)) as err:
        api.compile_graph(f"input: {shape}\nlayers:\n  - {layer}\n")
    assert err.value.line == 3
