"""Ops of archc/ops/pool.py: window, adaptive and global pooling."""

from __future__ import annotations

import pytest
import torch.nn.functional as F

from tests.ops.conftest import Reference, check_op

CASES: list[tuple[str, list[int], Reference]] = [
    (
        "maxpool: {kernel: 3, stride: 2, ceil_mode: true}",
        [3, 8, 8],
        lambda m, x: F.max_pool2d(x, 3, 2, ceil_mode=True),
    ),
    (
        "maxpool: {kernel: 3, stride: 1, padding: 1, dilation: 2}",
        [3, 8, 8],
        lambda m, x: F.max_pool2d(x, 3, 1, 1, 2),
    ),
    (
        "avgpool: {kernel: 3, stride: 2, padding: 1, count_include_pad: false}",
        [3, 7, 7],
        lambda m, x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=False),
    ),
    ("avgpool: 2", [3, 9], lambda m, x: F.avg_pool1d(x, 2)),
    ("adaptive_avgpool: 3", [3, 7, 7], lambda m, x: F.adaptive_avg_pool2d(x, 3)),
    ("adaptive_maxpool: [2, 3]", [3, 7, 7], lambda m, x: F.adaptive_max_pool2d(x, (2, 3))),
    ("global_avgpool", [3, 5, 6], lambda m, x: F.adaptive_avg_pool2d(x, 1)),
    ("global_maxpool", [3, 5, 6], lambda m, x: F.adaptive_max_pool2d(x, 1)),
]


@pytest.mark.parametrize(("layer", "shape", "reference"), CASES, ids=[c[0] for c in CASES])
def test_pool_computes_the_torch_pooling(
    layer: str, shape: list[int], reference: Reference
) -> None:
    check_op(layer, shape, reference)
