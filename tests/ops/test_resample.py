"""Ops of archc/ops/resample.py: upsample by a scale or to a size."""

from __future__ import annotations

import pytest
import torch.nn.functional as F

from tests.ops.conftest import Reference, check_op

CASES: list[tuple[str, list[int], Reference]] = [
    ("upsample: 2", [3, 4, 5], lambda m, x: F.interpolate(x, scale_factor=2.0)),
    (
        "upsample: {size: [7, 9], mode: bilinear, align_corners: true}",
        [3, 4, 5],
        lambda m, x: F.interpolate(x, size=(7, 9), mode="bilinear", align_corners=True),
    ),
    (
        "upsample: {scale: 1.5, mode: linear}",
        [3, 8],
        lambda m, x: F.interpolate(x, scale_factor=1.5, mode="linear"),
    ),
]


@pytest.mark.parametrize(("layer", "shape", "reference"), CASES, ids=[c[0] for c in CASES])
def test_upsample_is_torch_interpolate(layer: str, shape: list[int], reference: Reference) -> None:
    check_op(layer, shape, reference)
